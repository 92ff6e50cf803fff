"""One `bootverify run` as a nightly job runs it: every output path checked and the inputs read
(expectations, last night's report) before the first boot; the static half; the runtime half
narrowed (selection.py), retried on infrastructure failures only (--infra-retries); the
cross-check, the device verdict, --expect and --baseline; every report written, a partial one
(with `error`) when an infrastructure failure or a signal ends the run early, before the error
goes on to cli.py, which alone turns it into a message and an exit status."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bootverify.android import BootMode
from bootverify.crosscheck import ModuleVerdict, crosscheck
from bootverify.errors import (
    EXIT_ERROR,
    InfraError,
    InputError,
    interrupt_status,
    signal_name,
    writing,
)
from bootverify.nightly import output
from bootverify.nightly.baseline import compare
from bootverify.nightly.expect import judge, read_expectations
from bootverify.nightly.meta import RunMeta, accel_for, hash_inputs, now_utc, qemu_version
from bootverify.nightly.previous import read_previous
from bootverify.nightly.selection import Selection, narrow
from bootverify.readers.bootimg import read_vendor_boot
from bootverify.report import write_json
from bootverify.reports.document import run_document
from bootverify.reports.junit import write_junit
from bootverify.reports.kcidb import kcidb_json
from bootverify.reports.ktap import write_ktap
from bootverify.reports.model import ErrorKind, RunError, RunRecord
from bootverify.reports.summary import summary_text
from bootverify.runtime.kmsg import DEFAULT_FAIL_ON, FindingClass
from bootverify.plan.shards import BY_COUNT, Costs, Part, cut_note, groups, split
from bootverify.reports.model import ShardRun
from bootverify.runtime.loader import default_jobs, guest_config, plan_images, run_parts
from bootverify.runtime.runner import DEFAULT_MODULE_TIMEOUT, Progress, RunReport
from bootverify.runtime.vm import VMConfig, guest_memory_mb, signals_as_interrupt
from bootverify.static.analysis import StaticReport
from bootverify.static.check import CheckInputs
from bootverify.verdict import (
    Boots,
    DeviceVerdict,
    decide,
    entry_crashes,
    entry_failures,
    runtime_crashes,
    verdict_facts,
)

TAP, KCIDB = "tap", "kcidb"         # the report copies only a path given asks for


@dataclass(frozen=True)
class RunOptions:
    check: CheckInputs
    boot: Path
    vendor_kernel_boot: Path
    system_dlkm: Path | None = None
    vendor_dlkm: Path | None = None
    boot_mode: BootMode | None = None
    busybox: Path | None = None
    config: VMConfig = VMConfig()
    module_timeout: float = DEFAULT_MODULE_TIMEOUT
    console_log: Path | None = None     # a copy of the output directory's console.log
    expect: Path | None = None
    strict_expect: bool = False
    baseline: Path | None = None
    rerun_failed: Path | None = None
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    name: str | None = None
    infra_retries: int = 0
    fail_on: frozenset[FindingClass] = DEFAULT_FAIL_ON     # the findings that fail the run
    jobs: int | None = None             # guests at once (None: the host's CPUs, memory-capped)
    shard: tuple[int, int] = (1, 1)     # --shard I/N: this run loads part I of N
    argv: tuple[str, ...] = field(default_factory=tuple)


def _name(opts: RunOptions) -> str:
    if opts.name:
        return opts.name
    return read_vendor_boot(opts.vendor_kernel_boot).name or "bootverify"


def write_reports(run: RunRecord, outputs: output.Outputs, opts: RunOptions) -> None:
    outputs.write(output.REPORT, _json_text(run_document(run)))
    outputs.write(output.META, _json_text(dict(run.meta)))
    outputs.write(output.SUMMARY, summary_text(run))
    for what, write in ((output.JUNIT, write_junit), (TAP, write_ktap)):
        for dest in outputs.destinations(what):
            with writing(dest), open(dest, "w", encoding="utf-8") as out:
                write(run, out)
    outputs.write(KCIDB, _json_text(kcidb_json(run)))
    if opts.console_log is not None:
        with writing(opts.console_log):
            shutil.copyfile(outputs.path(output.CONSOLE), opts.console_log)


def _json_text(doc: dict) -> str:
    buf = io.StringIO()
    write_json(doc, buf)
    return buf.getvalue()


def plan_outputs(directory: Path | None, *, json: Path | None, junit: Path | None,
                 tap: Path | None, kcidb: Path | None,
                 console_log: Path | None) -> output.Outputs:
    """Every output path checked, before any input is opened (nothing is made yet)."""
    return output.Outputs.plan(directory, [
        (output.REPORT, json), (output.JUNIT, junit), (TAP, tap), (KCIDB, kcidb),
        ("console-log", console_log)])


def run_nightly(opts: RunOptions, outputs: output.Outputs,
                static_half: Callable[[], StaticReport],
                progress: Progress | None = None) -> RunRecord:
    """`outputs`: plan_outputs()'s; `static_half`: the static analysis of the same inputs
    (cli.py's: it knows how they were opened), run once the nightly inputs have been read."""
    started = now_utc()
    expectations = read_expectations(opts.expect) if opts.expect else None
    previous = read_previous(opts.baseline) if opts.baseline else None
    costs = previous.costs() if previous else BY_COUNT
    selection = Selection(opts.only, opts.exclude,
                          read_previous(opts.rerun_failed).failed() if opts.rerun_failed
                          else None, str(opts.rerun_failed or ""))
    static = static_half()
    name = _name(opts)
    meta = RunMeta(name, started, opts.argv, hash_inputs([
        ("boot", opts.boot), ("vendor_kernel_boot", opts.vendor_kernel_boot),
        ("system_dlkm", opts.system_dlkm), ("vendor_dlkm", opts.vendor_dlkm),
        ("symvers", opts.check.symvers), ("system_map", opts.check.system_map),
        *((f"kmi_symbol_list.{i}", p) for i, p in enumerate(opts.check.kmi_symbol_lists)),
        ("protected_exports", opts.check.protected_exports), ("busybox", opts.busybox),
        ("expect", opts.expect), ("baseline", opts.baseline),
        ("rerun_failed", opts.rerun_failed)]),
        opts.config.qemu, qemu_version(opts.config.qemu), accel_for(opts.config))
    known = [p.name for p in static.modules]
    retries: list[str] = []

    def record(runtime: RunReport | None, error: RunError | None) -> RunRecord:
        verdicts = _verdicts(static, runtime, planned[-1][0]) if runtime and planned else []
        shard_run = None
        guests: tuple[str, ...] = ()            # several guests: where the plan was cut
        if runtime is not None and runtime.plan is not None and planned:
            mine, whole = planned[-1]
            plan = runtime.plan
            failing: dict[int, str] = {}
            for entries, outcomes in runtime.guests:
                failing |= entry_failures(plan, outcomes, entries)
            crashed = entry_crashes(plan, runtime_crashes((*runtime.results, *runtime.context)),
                                    frozenset().union(*(e for e, _ in runtime.guests)))
            device = decide(verdict_facts(plan), failing, crashed)
            mode = plan.boot.mode.value if plan.boot else None
            index, count = opts.shard
            cuts = [plan.listed[min(entries)].name for entries, _ in runtime.guests[1:]
                    if entries]
            if cuts:
                guests = (cut_note(f"{len(runtime.guests)} guests", cuts, costs),)
            shard_run = ShardRun(index, count, whole, failing,
                                 (f"shard {index}/{count}: {len(mine.owned)} of the "
                                  f"plan's {len(plan.steps)} modules; the device verdict covers "
                                  f"its own load-list entries, `bootverify merge` gives the "
                                  f"whole plan's",) if count > 1 else (), crashed)
        else:
            device = DeviceVerdict(Boots.STOPS, None, None, "the run ended before the first "
                                   "boot", ())
            mode = None
        finished = now_utc()
        return RunRecord(
            name, started, (finished - started).total_seconds(), static, verdicts, device, mode,
            (*runtime.notes, *guests, *(shard_run.notes if shard_run else ())) if runtime
            else (),
            str(outputs.path(output.CONSOLE)),
            runtime.release if runtime else (static.kernel_release or ""),
            meta.json(finished, runtime.boots if runtime else (), retries),
            judge(expectations, verdicts, device, known, opts.strict_expect)
            if expectations else None,
            compare(previous, verdicts, known) if previous else None, error,
            runtime.plan if runtime else None, opts.fail_on, shard_run)

    made = outputs.make()
    partial: list[RunReport] = []
    planned: list[tuple[Part, tuple[Part, ...]]] = []    # this shard's part, the whole split
    with signals_as_interrupt():
        with writing(outputs.path(output.CONSOLE)):
            console: TextIO = open(outputs.path(output.CONSOLE), "w", encoding="utf-8",
                                   errors="replace")
        with console:
            try:
                runtime = _run_with_retries(opts, selection, costs, console, progress,
                                            partial, retries, planned)
            except InputError:
                # bad input found only now (an image's layout, read for the plan): as before
                # the first boot, nothing is left behind
                if made:
                    shutil.rmtree(outputs.dir, ignore_errors=True)
                raise
            except InfraError as e:
                console.flush()
                write_reports(record(partial[-1] if partial else None, RunError(
                    ErrorKind.INFRASTRUCTURE, str(e), EXIT_ERROR)), outputs, opts)
                raise
            except KeyboardInterrupt as e:
                console.flush()
                write_reports(record(partial[-1] if partial else None, RunError(
                    ErrorKind.INTERRUPTED, f"interrupted by {signal_name(e)}",
                    interrupt_status(e))), outputs, opts)
                raise
        run = record(runtime, None)
        write_reports(run, outputs, opts)
    return run


def _verdicts(static: StaticReport, runtime: RunReport, mine: Part) -> list[ModuleVerdict]:
    """The cross-check of what this shard owns, each module against its outcome in plan order
    (the modules another shard owns, loaded here only as dependencies, are context)."""
    ordered = {(r.origin, r.name): r for r in runtime.results + runtime.context}
    steps = runtime.plan.steps if runtime.plan is not None else ()
    return [v for v in crosscheck(static.modules, [ordered[s.key] for s in steps
                                                   if s.key in ordered])
            if (v.runtime.origin, v.runtime.name) in mine.owned]


def _run_with_retries(opts: RunOptions, selection: Selection, costs: Costs, console: TextIO,
                      progress: Progress | None, partial: list[RunReport],
                      retries: list[str],
                      planned: list[tuple[Part, tuple[Part, ...]]]) -> RunReport:
    """The runtime half; an infrastructure failure (never a module's) is tried again up to
    --infra-retries times, from the start: a module's outcome is only ever from one run.
    `planned` gets this shard's part and the whole split (plan/shards.py, by `costs`) once
    planned."""
    while True:
        partial.clear()
        try:
            prepared = plan_images(opts.boot, opts.vendor_kernel_boot,
                                   system_dlkm=opts.system_dlkm, vendor_dlkm=opts.vendor_dlkm,
                                   busybox=opts.busybox, boot_mode=opts.boot_mode,
                                   narrow=lambda plan: narrow(plan, selection))
            index, count = opts.shard
            whole = split(groups(prepared.plan, reboots=costs.reboots), count, costs)
            mine = whole[index - 1]
            planned.append((mine, whole))
            jobs = opts.jobs or default_jobs(guest_memory_mb(opts.config,
                                                             prepared.initrd_bytes()))
            parts = [p for p in split(mine.groups, jobs, costs) if p.groups] or [mine]
            return run_parts(prepared, parts, config=guest_config(opts.config, len(parts)),
                             module_timeout=opts.module_timeout, progress=progress,
                             console_log=console, on_abort=partial.append)
        except InfraError as e:
            if len(retries) >= opts.infra_retries:
                raise
            retries.append(str(e))
            console.write(f"\n=== bootverify: infrastructure failure ({e}); retry "
                          f"{len(retries)} of {opts.infra_retries} ===\n")
