"""Command line: the one place that turns errors into messages and exit codes.

Exit codes: 0 nothing failed, 1 a module fails (predicted or observed), the device would not
boot, a module set has .ko files and no load list, or static and runtime disagree, 2 bad input
or broken infrastructure (one line on stderr, no traceback; for `merge`: a shard's report is
partial).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from bootverify.cache import cache_dir
from bootverify import version
from bootverify.errors import (
    EXIT_ERROR,
    InfraError,
    InputError,
    interrupt_status,
    one_line,
    reading,
    signal_name,
    signals_as_interrupt,
    writing,
)
from bootverify.readers import bootimg
from bootverify.readers.kernel import parse_kernel
from bootverify.readers.ramdisk import Compression, decompress, unpack_initrd, write_tree
from bootverify.readers.ramdisk import detect as detect_compression
from bootverify.readers.symbols import read_kmi_symbol_lists, read_symvers
from bootverify.inputs import add_input_args, opened, required
from bootverify.report import (duplicates_json, duplicates_text, static_json, static_text,
                               write_json)
from bootverify.plan.model import Disposition
from bootverify.runtime.kmsg import DEFAULT_FAIL_ON, FindingClass
from bootverify.static.analysis import StaticReport, Verdict
from bootverify.static.check import run_check
from bootverify.static.kmidiff import exports_by_symbol, kmi_diff

if TYPE_CHECKING:
    from bootverify.nightly.session import RunOptions
    from bootverify.crosscheck import ModuleVerdict
    from bootverify.inputs import Opened
    from bootverify.runtime.kmsg import RuntimeResult
    from bootverify.runtime.runner import RunReport
    from bootverify.verdict import DeviceVerdict

EXIT_OK, EXIT_FAIL = 0, 1


def write_output(dest: str, write: Callable[[TextIO], None]) -> None:
    """Write a report to a file, or to stdout for "-" (which stays open)."""
    if dest == "-":
        write(sys.stdout)
        return
    with writing(dest), open(dest, "w", encoding="utf-8") as out:
        write(out)


def warn(message: str) -> None:
    """A problem that costs only time (an unusable cache): one line, and the run goes on."""
    print(f"bootverify: warning: {one_line(message)}", file=sys.stderr)


# --- check ---

def _say(lines: Sequence[str]) -> None:
    """What each input was taken from (--dist, an image extracted, an image written): on
    stderr, so that `--json -` stays JSON."""
    for line in lines:
        print(line, file=sys.stderr)


def planned_failures(report: StaticReport) -> bool:
    """A module predicted to fail that the device would try to load (an unlisted or blocklisted
    one is reported, not counted, as `run` does), or any failing module of a plain set."""
    if report.plan is None:
        return any(p.verdict is Verdict.FAIL for p in report.modules)
    loads = {u.name for u in report.plan.units.values() if u.disposition is Disposition.LOAD
             or u.disposition is Disposition.NOT_FOUND}
    return any(p.verdict is Verdict.FAIL and p.name in loads for p in report.modules)


def cmd_check(args: argparse.Namespace) -> int:
    from bootverify.verdict import device_verdict, predicted_outcomes
    with opened(args, run=False) as inputs:
        _say(inputs.lines)
        cache = cache_dir() / "check" if inputs.cacheable and not args.no_cache else None
        report = inputs.relabel(run_check(inputs.check, cache, warn))
        _say(inputs.list_notes(report.plan))
    device = (device_verdict(report.plan, predicted_outcomes(report.plan, report.modules))
              if report.plan else None)
    if args.json:
        doc = static_json(report, device) | {"duplicates": duplicates_json(report.plan)}
        write_output(args.json, lambda out: write_json(doc, out))
    if args.json != "-":
        static_text(report, sys.stdout, device)
        duplicates_text(report.plan, sys.stdout)
    return EXIT_FAIL if planned_failures(report) or (device and device.failed) else EXIT_OK


# --- run ---

def _progress(result: RuntimeResult, done: int, total: int) -> None:
    errno = f" {result.errno_name}" if result.errno else ""
    found = f" + {', '.join(f.kind for f in result.findings)}" if result.findings else ""
    print(f"[{done:{len(str(total))}}/{total}] {result.name:30} {result.outcome.value}{errno}"
          f"{found} ({result.seconds:.2f} s)", file=sys.stderr, flush=True)


def fail_on_classes(text: str) -> frozenset[FindingClass]:
    """--fail-on's value: finding classes, comma-separated; `all`, or empty for none."""
    words = {w.strip() for w in text.split(",")} - {""}
    if words == {"all"}:
        return frozenset(FindingClass)
    known = {c.value for c in FindingClass}
    if unknown := sorted(words - known):
        raise argparse.ArgumentTypeError(
            f"unknown finding class {', '.join(unknown)} (known: {', '.join(known)}, all)")
    return frozenset(FindingClass(w) for w in words)


def shard_arg(text: str) -> tuple[int, int]:
    """--shard's value: `I/N`, 1 <= I <= N."""
    i, slash, n = text.partition("/")
    if not (slash and i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n)):
        raise argparse.ArgumentTypeError(f"{text!r}: I/N with 1 <= I <= N, e.g. 2/4")
    return int(i), int(n)


def boot_and_load(args: argparse.Namespace, inputs: Opened, boot: Path, report: StaticReport
                  ) -> tuple[RunReport, tuple[ModuleVerdict, ...], DeviceVerdict]:
    """The runtime half of `run` and `replacement`: boot, load every module, cross-check with
    the static `report`, say what the device would do."""
    # The runtime (pexpect, qemu plumbing) is imported only here: `check` starts faster without.
    from bootverify.crosscheck import crosscheck
    from bootverify.runtime.loader import run_images
    from bootverify.runtime.vm import VMConfig
    from bootverify.verdict import device_verdict, runtime_crashes
    given = {"boot_timeout": args.boot_timeout, "memory_mb": args.memory}
    config = VMConfig(accel=args.accel, **{k: v for k, v in given.items() if v is not None})
    timeout = {"module_timeout": args.module_timeout} if args.module_timeout is not None else {}
    # `replacement`'s console log (`run` has its output directory: nightly/session.py)
    with writing(args.console_log):
        console = open(args.console_log, "w", encoding="utf-8", errors="replace")
    with console:
        runtime = run_images(boot, inputs.vendor_kernel_boot,
                             system_dlkm=inputs.system_dlkm, vendor_dlkm=inputs.vendor_dlkm,
                             busybox=args.busybox, config=config, progress=_progress,
                             console_log=console, boot_mode=args.boot_mode, **timeout)
    verdicts = tuple(crosscheck(report.modules, list(runtime.results)))
    assert runtime.plan is not None
    device = device_verdict(runtime.plan, {(r.origin, r.name): r.outcome.value
                                           for r in runtime.results},
                            runtime_crashes((*runtime.results, *runtime.context)))
    return runtime, verdicts, device


def cmd_run(args: argparse.Namespace) -> int:
    # The runtime (pexpect, qemu plumbing) is imported only here: `check` starts faster without.
    from bootverify.nightly.session import plan_outputs, run_nightly
    from bootverify.reports.document import run_document
    from bootverify.reports.model import failed_run
    from bootverify.reports.summary import summary_text
    outputs = plan_outputs(args.output, json=None if args.json in (None, "-") else
                           Path(args.json), junit=args.junit, tap=args.tap, kcidb=args.kcidb,
                           console_log=args.console_log)
    with opened(args, run=True) as inputs:
        boot = required(inputs.boot, "boot image", ("--boot", "--kernel"))
        _say(inputs.lines)

        def static_half() -> StaticReport:
            cache = cache_dir() / "check" if inputs.cacheable else None
            report = inputs.relabel(run_check(inputs.check, cache, warn))
            _say(inputs.list_notes(report.plan))
            return report

        run = run_nightly(run_options(args, inputs, boot), outputs, static_half,
                          progress=_progress)
    if args.json == "-":
        write_json(run_document(run), sys.stdout)
    else:
        sys.stdout.write(summary_text(run))
        print(f"\nkernel {run.release}, {len(run.meta['boots'])} boot(s), {run.seconds:.1f} s; "
              f"reports in {Path(run.console_log).parent}")
    return EXIT_FAIL if failed_run(run) else EXIT_OK


def run_options(args: argparse.Namespace, inputs: Opened, boot: Path) -> RunOptions:
    from bootverify.nightly.session import RunOptions
    from bootverify.runtime.vm import VMConfig
    given = {"boot_timeout": args.boot_timeout, "memory_mb": args.memory}
    timeout = {"module_timeout": args.module_timeout} if args.module_timeout else {}
    return RunOptions(
        inputs.check, boot, inputs.vendor_kernel_boot,
        inputs.system_dlkm, inputs.vendor_dlkm, args.boot_mode, args.busybox,
        VMConfig(accel=args.accel, **{k: v for k, v in given.items() if v}),
        console_log=args.console_log, expect=args.expect, strict_expect=args.strict_expect,
        baseline=args.baseline,
        rerun_failed=args.rerun_failed, only=tuple(args.only), exclude=tuple(args.exclude),
        name=args.name, infra_retries=args.infra_retries, argv=tuple(sys.argv),
        fail_on=args.fail_on, jobs=args.jobs or None, shard=args.shard or (1, 1), **timeout)


# --- plan ---

def cmd_plan(args: argparse.Namespace) -> int:
    from bootverify.nightly.previous import read_previous
    from bootverify.plan.shards import BY_COUNT, groups, split
    from bootverify.report import plan_json
    from bootverify.runtime.loader import plan_images
    costs = read_previous(args.baseline).costs() if args.baseline else BY_COUNT
    with opened(args, run=True) as inputs:
        boot = required(inputs.boot, "boot image", ("--boot", "--kernel"))
        prepared = plan_images(boot, inputs.vendor_kernel_boot, system_dlkm=inputs.system_dlkm,
                               vendor_dlkm=inputs.vendor_dlkm, boot_mode=args.boot_mode,
                               with_agent=False)
    doc = plan_json(prepared.plan, split(groups(prepared.plan, reboots=costs.reboots),
                                         args.shards, costs), costs)
    if args.json:
        write_output(args.json, lambda out: write_json(doc, out))
    if args.json != "-":
        loads = sum(1 for s in doc["steps"] if s["line"])
        print(f"{len(doc['steps'])} modules, {loads} loaded, {len(prepared.plan.waves)} "
              f"wave(s); boot mode {doc['boot_mode']}")
        for s in doc["shards"]:
            took = f", {s['seconds']:.1f} s in {args.baseline}" if "seconds" in s else ""
            print(f"shard {s['shard']}/{s['count']}: {len(s['modules'])} modules, "
                  f"{len(s['entries'])} load-list entries, {s['loads']} loads{took}")
    return EXIT_OK


# --- merge ---

def cmd_merge(args: argparse.Namespace) -> int:
    import json

    from bootverify.merge import merge
    from bootverify.reports.junit import write_junit
    from bootverify.reports.summary import summary_text
    docs = []
    for path in args.reports:
        with reading(path):
            text = Path(path).read_text(encoding="utf-8")
        try:
            docs.append((str(path), json.loads(text)))
        except json.JSONDecodeError as e:
            raise InputError(path, f"not JSON: {e}") from None
    merged = merge(docs)
    if args.json:
        write_output(args.json, lambda out: write_json(merged.doc, out))
    if args.junit:
        write_output(args.junit, lambda out: write_junit(merged.record, out))
    if args.summary:
        write_output(args.summary, lambda out: out.write(summary_text(merged.record)))
    if "-" not in (args.json, args.junit, args.summary):
        sys.stdout.write(summary_text(merged.record))
        print(f"\nmerged {len(docs)} report(s)")
    if merged.infra_failed:
        return EXIT_ERROR
    return EXIT_FAIL if merged.failed else EXIT_OK


# --- kmi-diff ---

def cmd_kmi_diff(args: argparse.Namespace) -> int:
    from bootverify.report import kmi_diff_json, kmi_diff_text
    kmi = read_kmi_symbol_lists(args.kmi_symbol_list) if args.kmi_symbol_list else None
    diff = kmi_diff(exports_by_symbol(read_symvers(args.old)),
                    exports_by_symbol(read_symvers(args.new)), kmi)
    if args.json:
        doc = {"old": str(args.old), "new": str(args.new), **kmi_diff_json(diff)}
        write_output(args.json, lambda out: write_json(doc, out))
    if args.json != "-":
        kmi_diff_text(diff, kmi is not None, sys.stdout)
    return EXIT_FAIL if diff.breaking else EXIT_OK


# --- kmi-list ---

def cmd_kmi_list(args: argparse.Namespace) -> int:
    from bootverify.readers.symbols import format_kmi_symbol_list_sections
    from bootverify.report import strict_lines, unprovided_lines
    from bootverify.static.kmilist import (additions, by_modules, kmi_needs, read_kmi_inputs,
                                           strict_check)
    with opened(args, run=False) as inputs:
        _say(inputs.lines)
        kernel, modules, gki = read_kmi_inputs(inputs.check, tuple(args.gki_modules))
    needs = kmi_needs(kernel.exports, modules, gki)
    listed = kernel.kmi or frozenset()
    sys.stdout.write(format_kmi_symbol_list_sections(
        by_modules(needs.needed if args.full else additions(needs, listed))))
    _say(unprovided_lines(needs, kernel.exports))
    if not args.strict:
        return EXIT_OK
    strict = strict_check(kernel.exports, listed)
    _say(strict_lines(strict, kernel.exports, listed))
    return EXIT_OK if strict.equal else EXIT_FAIL


# --- replacement ---

def cmd_replacement(args: argparse.Namespace) -> int:
    from bootverify.readers.dist import read_dist
    from bootverify.replacement import Booted, judge
    from bootverify.report import (gki_inputs_text, replacement_json, replacement_junit,
                                   replacement_text)
    from bootverify.static.replacement import analyze_replacement, gki_build, yours
    gki = gki_build(read_dist(args.gki_dist) if args.gki_dist else None, args.gki_symvers,
                    tuple(args.kmi_symbol_list), args.system_dlkm)
    # Your build's inputs as `run` takes them, with the GKI's modules as system_dlkm and the
    # GKI's KMI lists.
    mine = argparse.Namespace(**{**vars(args), "system_dlkm": gki.modules_dir,
                                 "kmi_symbol_list": list(gki.kmi_symbol_lists)})
    _say(gki_inputs_text(gki))
    with opened(mine, run=not args.static_only) as inputs:
        _say(inputs.lines)
        replacement, given = yours(gki, inputs), inputs.given
        rep = analyze_replacement(replacement, cache_dir() / "check" if inputs.cacheable
                                  else None, inputs.relabel)
        booted = None if args.static_only else Booted(*boot_and_load(
            args, inputs, replacement.replacement.boot, rep.static))
    verdict = judge(rep, booted)
    if args.json:
        doc = replacement_json(verdict, args.console_log, gki, given)
        write_output(args.json, lambda out: write_json(doc, out))
    if args.junit:
        write_output(args.junit, lambda out: replacement_junit(verdict, out))
    if args.json != "-":
        replacement_text(verdict, args.console_log, sys.stdout)
    return EXIT_FAIL if verdict.failed else EXIT_OK


# --- inspect / unpack ---

def _kernel_rows(img: bootimg.BootImage) -> list[tuple[str, str]]:
    """What `inspect` says of a boot image's kernel: its release, as modules' vermagic needs."""
    if not img.kernel:
        return [("kernel", "none")]
    try:
        k = parse_kernel(img.kernel, "kernel")
    except InputError as e:
        return [("kernel", e.problem)]
    return [("kernel release", k.release), ("kernel compression", k.compression.value),
            ("kernel vermagic", k.vermagic or "not found")]


def cmd_inspect(args: argparse.Namespace) -> int:
    img = bootimg.read_boot_image(args.image)
    rows = bootimg.describe(img)
    if isinstance(img, bootimg.BootImage):
        rows += _kernel_rows(img)
    for name, value in rows:
        print(f"{name:28} {value}")
    return EXIT_OK


def _unpack_ramdisk(out: Path, name: str, data: bytes, label: str) -> None:
    """A ramdisk section's contents beside its raw bytes: NAME.cpio (decompressed, when it was
    compressed) and NAME.files/ (the tree it unpacks to, later archives winning)."""
    if not data:
        return
    if detect_compression(data) is not Compression.NONE:
        (out / f"{name}.cpio").write_bytes(decompress(data, label))
        print(out / f"{name}.cpio")
    files = out / f"{name}.files"
    shutil.rmtree(files, ignore_errors=True)       # a second unpack into DIR starts afresh
    files.mkdir()
    written = write_tree(unpack_initrd(data, label), files, label)
    print(f"{files}/ ({len(written)} files)")


def cmd_unpack(args: argparse.Namespace) -> int:
    img = bootimg.read_boot_image(args.image)
    out: Path = args.dir
    files: dict[str, bytes] = {"cmdline": img.cmdline.encode() + b"\n"}
    ramdisks: dict[str, bytes] = {}
    if isinstance(img, bootimg.BootImage):
        files.update(kernel=img.kernel, ramdisk=img.ramdisk, second=img.second,
                     recovery_dtbo=img.recovery_dtbo, dtb=img.dtb, signature=img.signature)
        ramdisks["ramdisk"] = img.ramdisk
    else:
        files.update(dtb=img.dtb, bootconfig=img.bootconfig)
        for i, r in enumerate(img.ramdisks):
            name = f"vendor_ramdisk{i:02d}" + (f"_{r.name}" if r.name else "")
            files[name] = ramdisks[name] = r.data
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            if data:
                (out / name).write_bytes(data)
                print(out / name)
        for name, data in ramdisks.items():
            _unpack_ramdisk(out, name, data, f"{args.image}:{name}")
    return EXIT_OK


# --- images ---

def cmd_images_build(args: argparse.Namespace) -> int:
    from bootverify import samples      # pulls in the build recipes only when asked
    from bootverify.samples.recipe import generations
    known = generations()
    if args.kernel not in (None, *known, "all"):
        raise InputError("--kernel", f"no sample kernel generation {args.kernel!r} (the recipe "
                         f"has {', '.join(known)}, or all)")
    for generation in known if args.kernel == "all" else (args.kernel or known[-1],):
        print(samples.build(cache_dir() / "images", lambda line: print(line, file=sys.stderr),
                            generation=generation), flush=True)
    return EXIT_OK


# --- run's options, by concern ---

# Beyond these an option is a typo, and a timeout past a day overflows what select() takes.
MAX_SECONDS = 86400.0
MAX_MEMORY_MB = 1 << 20


def number(kind: type[float] | type[int], minimum: float, exclusive: bool = True,
           maximum: float = math.inf) -> Callable[[str], float]:
    """An argparse type: a finite number above `minimum` (or at least it), at most `maximum`;
    anything else is bad input (argparse: exit 2), never silently the default."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        if value < minimum or (exclusive and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'greater than' if exclusive else 'at least'} {minimum:g}: {text!r}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}: {text!r}")
        return value
    return parse


def add_vm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--module-timeout", type=number(float, 0, maximum=MAX_SECONDS), metavar="S",
                   help="a module whose load takes longer is recorded as hung (default 30; "
                        "seconds, > 0)")
    p.add_argument("--boot-timeout", type=number(float, 0, maximum=MAX_SECONDS), metavar="S",
                   help="seconds from qemu start to the agent's prompt (default 120; > 0)")
    p.add_argument("--memory", type=number(int, 64, exclusive=False, maximum=MAX_MEMORY_MB),
                   metavar="MB",
                   help="guest memory (default: 1024 + 16 x the initrd's size in MB; >= 64)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="KVM (with -cpu host) when the host is aarch64 with a usable /dev/kvm")


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", type=Path, metavar="DIR",
                   help="where report.json, junit.xml, console.log, summary.txt and meta.json "
                        "go (default: a fresh bootverify-YYYYmmddTHHMMSSZ/ under the current "
                        "directory); every output path is checked before the first boot")
    p.add_argument("--name", metavar="NAME",
                   help="the JUnit suite and report name (default: the vendor boot image's "
                        "name, else bootverify): two devices in one job do not collide")
    p.add_argument("--json", metavar="PATH|-",
                   help="also write the JSON report here (- for stdout, instead of the summary)")
    p.add_argument("--junit", type=Path, metavar="PATH",
                   help="also write the JUnit XML here (junit-10.xsd and Ant JUnit.xsd valid)")
    p.add_argument("--tap", type=Path, metavar="PATH",
                   help="write a KTAP (kselftest-style) report, one test a module")
    p.add_argument("--kcidb", type=Path, metavar="PATH",
                   help="write KCIDB JSON (schema v4) for KernelCI")
    p.add_argument("--console-log", type=Path, metavar="PATH",
                   help="also copy the full serial console log here (always in --output)")


def add_nightly_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expect", type=Path, metavar="FILE",
                   help="TOML of known failures ([modules.NAME] outcome/agreement, reason, "
                        "link; [android] verdict, stops_at): expected failures do not fail the "
                        "run, an expected failure that passes is reported fixed, anything else "
                        "that fails is a regression (exit 1)")
    p.add_argument("--strict-expect", action="store_true",
                   help="with --expect: fixed modules and stale entries fail the run too")
    p.add_argument("--baseline", type=Path, metavar="PREV.json",
                   help="last night's report.json: per module new-failure, fixed, "
                        "still-failing, still-passing, new-module, gone; with several guests "
                        "or shards, the plan is cut by the seconds each module took in it")
    p.add_argument("--rerun-failed", type=Path, metavar="PREV.json",
                   help="run only the modules that failed in that report (with their "
                        "dependencies)")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only modules whose name matches (fnmatch; repeatable), with "
                        "their dependencies")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="leave out modules whose name matches (fnmatch; repeatable); their "
                        "dependents still get them as dependencies")


RUN_DESCRIPTION = """\
Inputs: the same options as `check` (a check command line plus --boot is a run one). --dist DIR
takes a build's dist directory as it is (Kleaf's names; one line on stderr per input says what
was taken from where; an explicit option wins). --system-dlkm / --vendor-dlkm take a directory,
an ext4 or erofs partition image (extracted without mounting) or a staging archive. --kernel
Image|Image.gz|Image.lz4 instead of --boot, with --modules-dir DIR instead of
--vendor-kernel-boot: bootverify writes boot.img and vendor_kernel_boot.img itself, as AOSP's
mkbootimg would (header v4, a DLKM ramdisk); their dtb is qemu virt's, not the device's.

Boot boot.img + vendor_kernel_boot.img in qemu-system-aarch64 as a bootloader would (initrd =
vendor ramdisks, generic ramdisk, bootverify's agent, bootconfig; cmdline = boot + vendor +
console=ttyAMA0 ...), then load every module as Android does (AOSP libmodprobe and
first_stage_init): first stage the vendor ramdisk's module directory (uname -r, else
major.minor, else /lib/modules), second stage --system-dlkm, then --vendor-dlkm; each
directory's load list for the boot mode (modules.load, modules.load.recovery,
modules.load.charger: from bootconfig/cmdline androidboot.mode, or --boot-mode),
modules.alias, modules.dep (hard deps first), modules.softdep (pre, post), modules.options and
the cmdline's mod.param=, modules.blocklist; one module at a time, or, when bootconfig says
androidboot.load_modules_parallel = "true", first stage in LoadModulesParallel's waves of
dependency leaves on all guest CPUs (load_sequential=1 alone). It goes on after a failure:
every module gets an outcome, and the report says first where the device itself would have
stopped.

The device verdict (first line; JSON "android"; JUnit testcase android-boot): boots, or stops
in first-stage at MODULE (the first failing load-list entry: LOG(FATAL), reboot to the
bootloader; not strict with androidboot.first_stage_console), or stops because the vendor
ramdisk has .ko files and no load list. Second-stage failures do not stop the boot (init rc
goes on) but fail the run. A crashed or hung load stops it in any stage: a kernel panic
reboots the device, an oops kills init where init loads (first stage; second stage: bootverify
does not read init rc, and takes init's `insmod` over an exec of modprobe); a hung one (no
answer within --module-timeout) leaves init waiting for good, no reboot (first_stage_init in
finit_module, LoadModulesParallel joining its threads; second stage init's `insmod`, or an
`exec` init waits for: init/builtins.cpp do_insmod, do_exec; only a `service` would not block).

Runtime outcome per module, from finit_module's errno and the kernel log:
  loaded, link-error (unknown symbol, disagrees about version, protected symbol, namespace not
  imported, version magic, invalid format, duplicate export), init-error (with errno),
  hung (no answer within --module-timeout: the VM is killed and booted again), crashed (oops,
  BUG() or panic, the loader killed: booted again; a BUG: report the kernel goes on from is a
  finding), skipped (blocklisted), not-found (in the load list, or a hard
  dependency, but not in modules.dep or not in the image: a failure), unlisted (a .ko in no load
  list: never loaded; its static verdict is still shown).

Agreement with the static analysis (the same inputs as `bootverify check`):
  confirmed     failure predicted and observed, same symbols
  latent        KMI violation predicted, but it loaded: this kernel is not trimmed
  missed        a link error the analysis did not predict (a defect: please report)
  unconfirmed   a predicted link failure that did not happen
  runtime-only  init error, hang or crash: not a linking problem
  skipped       not given to the kernel (blocklisted, not-found, unlisted)
  ok            predicted to load, and loaded

Findings: what else the kernel log shows while a module loads, its outcome unchanged (a module
that WARNs has loaded): warning (a WARN block), bug, kasan, kfence, ubsan, kcsan, lockdep,
rcu-stall, hung-task, soft-lockup, firmware (a missing firmware file), probe (a failed probe),
deferred-probe. --fail-on chooses those that fail the run (default: bug, kasan, kfence, ubsan,
kcsan, lockdep); all are reported.

Nightly use: --expect FILE names the known failures (the sample images ship expect.toml),
--baseline compares with last night's report.json, --rerun-failed / --only / --exclude narrow
the run (dependencies come along), --output DIR holds every report (summary.txt: the device
verdict, counts, root causes grouped, top symbols; report.json with meta: tool, qemu, host,
inputs' sha256, boots), partial ones with `error` when the run is cut short.

Exit status: 0 the device boots, every listed module loaded (blocklisted ones aside), nothing
disagrees and no --fail-on finding showed (with --expect: no regression); 1 the device would
stop, a module fails, a module set has .ko files and no load list, a disagreement, or a
--fail-on finding (with --expect: only a regression, or with --strict-expect a fixed module or
a stale entry); 2 bad input or infrastructure failure (qemu missing, no agent prompt: the
reports are written, partial, with an error); 130 / 143 / 129 interrupted by SIGINT / SIGTERM /
SIGHUP (reports written, partial).
"""


def add_boot_args(p: argparse.ArgumentParser) -> None:
    """The boot's options, `run`'s and `replacement`'s (boot_and_load)."""
    p.add_argument("--busybox", type=Path, metavar="PATH",
                   help="static arm64 busybox for the agent (default: Debian's busybox-static, "
                        "fetched once into the cache)")
    add_vm_args(p)


def add_replacement_report_args(p: argparse.ArgumentParser) -> None:
    """`replacement`'s reports: its JSON and JUnit, and the boot's console log."""
    p.add_argument("--json", metavar="PATH|-",
                   help="write the JSON report here (- for stdout, instead of the text)")
    p.add_argument("--junit", type=Path, metavar="PATH", help="write the JUnit XML here")
    p.add_argument("--console-log", type=Path, default=Path("bootverify-console.log"),
                   metavar="PATH", help="the boot's serial console log (default %(default)s)")


REPLACEMENT_DESCRIPTION = """\
Validate a full-kernel-replacement build (your own kernel, no GKI base kernel, no KMI
enforcement) against the GKI build it replaces, in one report:
  KMI        the KMI symbols your kernel's symvers removed, changed (CRC, export type,
             namespace, owner) or added, compared with the GKI kernel's;
  modules    the static verdict (as `check`) of every GKI module and every device module on
             your kernel, and unless --static-only the runtime verdict of a boot (as `run`);
  why        for each module that would not load, the changed or removed KMI symbols that
             explain it ("that KMI symbol changed CRC in your kernel").
Inputs: the GKI build's from --gki-dist DIR (its vmlinux.symvers, KMI list, system_dlkm) or
--gki-symvers; yours with `run`'s options (--dist DIR, --boot or --kernel, --symvers,
--vendor-kernel-boot, --vendor-dlkm, ...), where --system-dlkm is the GKI modules (default:
--gki-dist's) and --kmi-symbol-list the GKI's KMI (default: --gki-dist's); an explicit option
wins over a dist's file. JSON: `run`'s (`check`'s with --static-only) with "replacement"
{verdict, failing, inputs} and "kmi" {symbols_compared, counts, changes} first, and per module
"origin" (gki, device) and "kmi_changes"; JUnit: `run`'s, a failing module's message naming
its KMI changes.

Exit status: 0 every GKI and device module would load on your kernel (after a boot also: the
device boots, and static and runtime agree); 1 otherwise; 2 bad input or infrastructure
failure.
"""




class _Parser(argparse.ArgumentParser):
    """Usage errors are bad input too: one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"bootverify: {self.prog}: {one_line(message)} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="bootverify",
        description="Do a device's kernel modules load on this kernel? Static KMI analysis of "
                    "the .ko files, and a real boot in qemu.",
        epilog="Exit status: 0 all good, 1 a module fails or static and runtime disagree, "
               "2 bad input or infrastructure failure, 128+N killed by signal N (run).")
    ap.add_argument("--version", action="version", version=f"bootverify {version()}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="predict, without booting, whether each module loads",
                       description="Static analysis by the kernel's own load-time rules: "
                                   "unresolved, crc-mismatch, missing-version, not-in-kmi, "
                                   "namespace, gpl-only, vermagic, protected, duplicate-export, "
                                   "dependency-failed. With a vendor boot image or dlkm "
                                   "directories it follows the load plan `run` follows (stages, "
                                   "boot mode, load lists, modules.dep order): a provider that "
                                   "loads later or never, a dependency or listed module "
                                   "libmodprobe cannot load, is `packaging`; the first line "
                                   "says whether the device would boot. The inputs are "
                                   "`run`'s: --dist DIR takes a build's dist directory as it "
                                   "is, and a check command line plus --boot is a run one. "
                                   "Modules shipped in two partitions are listed, each copy "
                                   "with its partition and path.")
    add_input_args(p)
    p.add_argument("--json", metavar="PATH|-", help="write the JSON report (- for stdout)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the report cache")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "run", help="boot the images in qemu, modprobe every device module, cross-check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=RUN_DESCRIPTION)
    add_input_args(p)
    add_boot_args(p)
    add_report_args(p)
    p.add_argument("--infra-retries", type=number(int, 0, exclusive=False), default=0,
                   metavar="N", help="run again, from the start, up to N times after an "
                                     "infrastructure failure (no agent prompt, qemu died "
                                     "outside a module); a module's failure is never retried")
    p.add_argument("--fail-on", type=fail_on_classes, default=DEFAULT_FAIL_ON,
                   metavar="CLASS,...",
                   help="finding classes that fail the run (default: "
                        f"{','.join(sorted(DEFAULT_FAIL_ON))}; all, or '' for none)")
    p.add_argument("--jobs", type=number(int, 0, exclusive=False), default=0, metavar="N",
                   help="guests at once, each loading a dependency-closed part of the plan with "
                        "an equal share of the host's CPUs (default, or 0: the host's CPU "
                        "count, capped by its memory; fewer when a cut would cost a part more "
                        "loads than it saves; --jobs 1 pins one guest)")
    p.add_argument("--shard", type=shard_arg, metavar="I/N",
                   help="load only shard I of a deterministic N-way split of the plan (the "
                        "split `bootverify plan --json` prints); `bootverify merge` joins them")
    add_nightly_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="print the load plan and its shard split, without booting")
    add_input_args(p)
    p.add_argument("--shards", type=number(int, 1, exclusive=False), default=1, metavar="N",
                   help="the split of `run --shard I/N` (default 1)")
    p.add_argument("--baseline", type=Path, metavar="PREV.json",
                   help="split by the seconds each module took in that report, as `run "
                        "--baseline PREV.json --shard I/N` does")
    p.add_argument("--json", metavar="PATH|-", help="write the plan as JSON (- for stdout)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("merge", help="merge the JSON reports of `run --shard I/N` into one")
    p.add_argument("reports", type=Path, nargs="+", metavar="REPORT.json")
    p.add_argument("--json", metavar="PATH|-", help="write the merged JSON (- for stdout)")
    p.add_argument("--junit", metavar="PATH|-", help="write the merged JUnit XML (testcase "
                   "android-boot, then one a module, as `run --junit` writes it)")
    p.add_argument("--summary", metavar="PATH|-", help="write the merged summary (as run's "
                   "summary.txt; it also goes to stdout unless a report does)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "replacement", help="does every GKI and device module load on a full-kernel "
                            "replacement build? KMI changes, static and runtime verdicts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=REPLACEMENT_DESCRIPTION)
    p.add_argument("--gki-dist", type=Path, metavar="DIR",
                   help="the GKI build's dist directory: its vmlinux.symvers, KMI list "
                        "(abi_symbollist, ...) and system_dlkm")
    p.add_argument("--gki-symvers", type=Path, metavar="FILE",
                   help="the GKI kernel's vmlinux.symvers (instead of --gki-dist's)")
    p.add_argument("--static-only", action="store_true", help="do not boot: static verdicts only")
    add_input_args(p)
    add_boot_args(p)
    add_replacement_report_args(p)
    p.set_defaults(func=cmd_replacement)

    p = sub.add_parser(
        "kmi-list", help="the KMI symbols the vendor modules need that the lists lack",
        description="Write to stdout, in [abi_symbol_list] format and grouped by module "
                    "(# required by X.ko, # commonly used symbols), the symbols the vendor "
                    "(unsigned) modules take from the kernel or the GKI modules (signed ones, "
                    "system_dlkm's, --gki-modules') that the --kmi-symbol-list files lack: what "
                    "Kleaf's extract_symbols --additions-only appends to "
                    "abi_gki_aarch64_<vendor>. Give the untrimmed kernel's exports. The inputs "
                    "are check's.")
    add_input_args(p)
    p.add_argument("--gki-modules", type=Path, action="append", default=[], metavar="DIR",
                   help="GKI modules: their exports count as the GKI's, like those of signed "
                        "modules and system_dlkm's; repeatable")
    p.add_argument("--full", action="store_true",
                   help="the whole list the vendor modules need, not only the additions")
    p.add_argument("--strict", action="store_true",
                   help="also check that the kernel exports exactly the KMI lists (Kleaf's "
                        "kmi_symbol_list_strict_mode); exit 1 when not")
    p.set_defaults(func=cmd_kmi_list)

    p = sub.add_parser(
        "kmi-diff", help="KMI symbols removed, changed (CRC, export type, namespace, owner) or "
                         "added between two symvers",
        description="Compare two kernels' exports (vmlinux.symvers or Module.symvers): every "
                    "symbol of OLD that NEW no longer exports (removed), exports otherwise "
                    "(changed: CRC, export type, namespace, owner), or NEW adds; the removed "
                    "and changed ones are what modules built against OLD would fail to link "
                    "against on NEW. With --kmi-symbol-list only the KMI's symbols count.",
        epilog="Exit status: 0 nothing removed or changed, 1 a symbol removed or changed, "
               "2 bad input.")
    p.add_argument("old", type=Path, metavar="OLD_SYMVERS",
                   help="symvers of the kernel the modules were built against")
    p.add_argument("new", type=Path, metavar="NEW_SYMVERS", help="symvers of the new kernel")
    p.add_argument("--kmi-symbol-list", type=Path, action="append", default=[], metavar="FILE",
                   help="Android KMI symbol list ([abi_symbol_list]); only its symbols are "
                        "compared; repeat to merge several")
    p.add_argument("--json", metavar="PATH|-", help="write the changes as JSON (- for stdout)")
    p.set_defaults(func=cmd_kmi_diff)

    p = sub.add_parser("inspect", help="print a boot image's header fields and sections, and "
                                       "its kernel's release",
                       description="Print the header fields of a boot.img (v0-v4) or "
                                   "vendor_boot.img / vendor_kernel_boot.img (v3/v4), the "
                                   "sizes of its sections (kernel, ramdisks, dtb, bootconfig) "
                                   "and its kernel's release.")
    p.add_argument("image", type=Path, metavar="IMG", help="the image to describe")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("unpack", help="write a boot image's kernel, ramdisks (raw, decompressed "
                                      "as NAME.cpio, unpacked as NAME.files/), dtb, "
                                      "bootconfig, cmdline to DIR",
                       description="Write each section of a boot or vendor boot image to DIR "
                                   "(made if missing): kernel, ramdisks (each vendor ramdisk "
                                   "fragment raw, decompressed as NAME.cpio and unpacked as "
                                   "NAME.files/), dtb, bootconfig, cmdline; prints each file "
                                   "written.")
    p.add_argument("image", type=Path, metavar="IMG", help="the image to unpack")
    p.add_argument("dir", type=Path, metavar="DIR", help="where the sections go")
    p.set_defaults(func=cmd_unpack)

    p = sub.add_parser("images", help="the built-in sample images",
                       description="The sample images: a GKI-like kernel and a replacement "
                                   "kernel from Debian's linux-source-6.1 or -6.12 with device "
                                   "modules carrying seeded faults (images/README.md).")
    isub = p.add_subparsers(dest="images_command", required=True)
    b = isub.add_parser("build", help="build (cached) and print the output directory last",
                        description="Build the sample images into $BOOTVERIFY_CACHE (cached "
                                    "by a hash of the recipe) and print the output directory "
                                    "last: boot.img, vendor_kernel_boot.img, system_dlkm/, "
                                    "vmlinux.symvers, kmi_symbol_list, expect.toml (the "
                                    "expected failures, for run --expect), replacement/. One "
                                    "output directory per kernel generation.")
    b.add_argument("--kernel", metavar="GENERATION", default=None,
                   help="the kernel generation: 6.1, 6.12 or all (default: the newest, 6.12); "
                        "with all, each generation's directory, the newest last")
    b.set_defaults(func=cmd_images_build)
    return ap


class _Stdout:
    """stdout for the reports. A reader that went away (`bootverify run ... | head -1`) is not
    bad input: the rest of the text is dropped and the exit status stays the verdict's. Any
    other write error (stdout on /dev/full) is an error naming stdout."""

    def __init__(self, out: TextIO) -> None:
        self.out: TextIO | None = out

    def __getattr__(self, name: str) -> object:
        return getattr(self.out, name)

    def _call(self, what: Callable[[TextIO], object]) -> None:
        if self.out is None:
            return
        try:
            what(self.out)
        except OSError as e:
            # Later writes, and the interpreter's flush at exit, go to /dev/null.
            with contextlib.suppress(OSError, ValueError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self.out.fileno())
                os.close(null)
            self.out = None
            if not isinstance(e, BrokenPipeError):
                raise InputError("(stdout)", f"cannot write: {e.strerror or e}") from None

    def write(self, text: str) -> int:
        self._call(lambda out: out.write(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._call(lambda out: out.flush())


def main(argv: list[str] | None = None) -> int:
    stdout = sys.stdout
    sys.stdout = _Stdout(stdout)  # type: ignore[assignment]
    try:
        with signals_as_interrupt():
            args = parser().parse_args(argv)
            status = int(args.func(args))
            sys.stdout.flush()
            return status
    except (InputError, InfraError) as e:
        print(f"bootverify: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        # A file access outside errors.reading() (ENAMETOOLONG from a stat): still bad input.
        where = e.filename if e.filename is not None else "(unknown file)"
        print(f"bootverify: {InputError(where, e.strerror or str(e))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as e:
        print(f"bootverify: interrupted by {signal_name(e)}", file=sys.stderr)
        return interrupt_status(e)
    finally:
        sys.stdout = stdout
