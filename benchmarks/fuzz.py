"""The long fuzz and fault-injection campaign of issue 15: mutated inputs for every reader and the
plan in-process, and a share of them through the `bootverify check` command, with path, output
and cache problems and a SIGTERM at a random moment.

    .venv/bin/python benchmarks/fuzz.py [--cases 5000] [--cli-every 100] [--seed 1]

Each case must end in a result or an InputError (the CLI: exit 0, 1 or 2 with at most one line
on stderr and no traceback), within its time limit, leaving nothing behind (no temp file in the
cache, no bootverify temp dir, no child process). Prints, last,
`cases N, tracebacks T, hangs H, leftovers L`; exit 1 unless all three are 0.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))      # tests/ is not a package: its helpers by path

from craft import (VERMAGIC, Exp, Mod, compile_modules, fake_image,  # noqa: E402
                   kmi_list, symvers_line)
from bootverify.errors import InputError  # noqa: E402
from bootverify.plan import ModuleSet, make_plan  # noqa: E402
from bootverify.readers import bootimg, kernel, modules, ramdisk, symbols  # noqa: E402
from bootverify.readers.bootimg import (BootImage, RamdiskType, VendorBootImage,  # noqa: E402
                                        VendorRamdisk)
from bootverify.readers.modulesdir import ModulesDir, parse_modules_dir  # noqa: E402
from bootverify.readers.ramdisk import Compression, CpioEntry, compress, write_cpio  # noqa: E402
from bootverify.verdict import device_verdict  # noqa: E402

CASE_SECONDS = 10            # an in-process case past this is a hang
CLI_SECONDS = 120
BOUNDARY_WORDS = (0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff)


class Hang(BaseException):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hang


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Truncations, bit flips, bytes and 32-bit words at boundary values, spliced repeats."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not out:
            break
        at = rng.randrange(len(out))
        how = rng.randrange(5)
        if how == 0:
            out[at] ^= 1 << rng.randrange(8)
        elif how == 1:
            out[at] = rng.choice((0, 0xff, 0x7f, 0x80, ord("0")))
        elif how == 2:
            out[at:at + 4] = rng.choice(BOUNDARY_WORDS + (len(data),)).to_bytes(4, "little")
        elif how == 3:
            out[at:at] = out[at:at + rng.randint(1, 64)] * rng.randint(1, 50)
        else:
            del out[at:at + rng.randint(1, 256)]
    if rng.random() < 0.3:
        out = out[:rng.randrange(len(out) + 1)]
    return bytes(out)


def seeds(work: Path) -> dict[str, bytes]:
    kos = compile_modules(work / "kos", {
        "provider": Mod(modinfo=(("license", "GPL"), ("vermagic", VERMAGIC)),
                        versions=(("module_layout", 1), ("kmalloc", 2)), undefined=("kmalloc",),
                        exports=(Exp("prov_fn", crc=0x51),
                                 Exp("prov_ns", gpl=True, namespace="NS", crc=0x52))),
        "consumer": Mod(modinfo=(("license", "GPL"), ("vermagic", VERMAGIC),
                                 ("depends", "provider"), ("import_ns", "NS")),
                        versions=(("module_layout", 1), ("prov_fn", 0x51)),
                        undefined=("prov_fn", "prov_ns"), weak=("maybe",))})
    ko = {name: p.read_bytes() for name, p in kos.items()}
    texts = {"modules.load": b"consumer.ko\nprovider.ko\n",
             "modules.dep": b"consumer.ko: provider.ko\nprovider.ko:\n",
             "modules.alias": b"alias pci:v* provider\n",
             "modules.softdep": b"softdep consumer pre: provider post: x\n",
             "modules.options": b"options provider a=1\n",
             "modules.blocklist": b"blocklist x\n"}
    tree = [CpioEntry("lib", stat.S_IFDIR | 0o755), CpioEntry("lib/modules", stat.S_IFDIR | 0o755)]
    tree += [CpioEntry(f"lib/modules/{n}.ko", stat.S_IFREG | 0o644, d) for n, d in ko.items()]
    tree += [CpioEntry(f"lib/modules/{n}", stat.S_IFREG | 0o644, t) for n, t in texts.items()]
    cpio = write_cpio(tree)
    image = fake_image()
    vendor = {v: bootimg.encode_vendor_boot_image(VendorBootImage(
        v, "v=1", (VendorRamdisk(compress(cpio, Compression.LZ4_LEGACY), RamdiskType.DLKM,
                                 "dlkm"),) if v == 4 else
        (VendorRamdisk(compress(cpio, Compression.GZIP)),),
        dtb=b"\xd0\x0d\xfe\xed" + bytes(12), bootconfig=b"androidboot.x = 1\n" if v == 4 else b""))
        for v in (3, 4)}
    return {
        "boot.img": bootimg.encode_boot_image(BootImage(
            4, compress(image, Compression.LZ4_LEGACY), compress(cpio[:200] + bytes(4),
                                                                Compression.GZIP), "c=1")),
        "vendor_v3.img": vendor[3], "vendor_v4.img": vendor[4],
        "initrd": cpio + bytes(4) + compress(cpio, Compression.GZIP),
        "Image.gz": compress(image, Compression.GZIP),
        "provider.ko": ko["provider"], "consumer.ko": ko["consumer"],
        **{n: t for n, t in texts.items()},
        "vmlinux.symvers": (symvers_line(1, "module_layout") + symvers_line(2, "kmalloc")
                            + symvers_line(3, "gpl_fn", kind="EXPORT_SYMBOL_GPL")).encode(),
        "abi_gki_aarch64": kmi_list("module_layout", "kmalloc").encode(),
    }


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def readers_for(name: str) -> Callable[[bytes], object]:
    if name.endswith(".img"):
        return lambda d: [ramdisk.unpack_initrd(r.data, name) for r in img.ramdisks] \
            if isinstance(img := bootimg.parse_boot_image(d, name), VendorBootImage) \
            else kernel.parse_kernel(img.kernel, name)
    if name == "initrd":
        return lambda d: _plan_of_tree(ramdisk.unpack_initrd(d, name))
    if name.startswith("Image"):
        return lambda d: kernel.parse_kernel(d, name)
    if name.endswith(".ko"):
        return lambda d: modules.parse_module(d, name)
    if name.startswith("modules."):
        return lambda d: _plan_of_dir(parse_modules_dir(Path("/m"), {name: _text(d)}))
    if name == "vmlinux.symvers":
        return lambda d: symbols.parse_symvers(_text(d), name)
    return lambda d: symbols.parse_kmi_symbol_list(_text(d), name)


def _plan_of_tree(tree: dict[str, CpioEntry]) -> object:
    from bootverify.plan import ramdisk_module_set
    from bootverify.android import BootMode
    s = ramdisk_module_set(tree, "6.1", BootMode.NORMAL)
    return _judge(make_plan([s]))


def _plan_of_dir(config: ModulesDir) -> object:
    files = frozenset(p for p in ("consumer.ko", "provider.ko", "x.ko"))
    return _judge(make_plan([ModuleSet("vendor_ramdisk", "/lib/modules", files, config)]))


def _judge(plan: object) -> object:
    return device_verdict(plan, {s.key: "loaded" for s in plan.steps})  # type: ignore


def leftovers(cache: Path) -> list[str]:
    found = [str(p) for p in cache.rglob(".*")] if cache.exists() else []
    found += [str(p) for p in Path(tempfile.gettempdir()).glob(f"bootverify-{os.getpid()}-*")]
    r = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True,
                       timeout=30)
    found += [f"child process {pid}" for pid in r.stdout.split()]
    return found


def cli_case(rng: random.Random, work: Path, inputs: dict[str, bytes], n: int) -> str:
    """One `bootverify check` run on mutated files, with a path, output, cache or signal
    problem now and then; "" when it ended as promised, else what went wrong."""
    d = work / f"cli{n}"
    (d / "modules").mkdir(parents=True)
    cache = d / "cache"
    env = {**os.environ, "BOOTVERIFY_CACHE": str(cache)}
    for name in ("provider.ko", "consumer.ko", "modules.dep", "modules.load"):
        data = inputs[name]
        (d / "modules" / name).write_bytes(mutate(rng, data) if rng.random() < 0.3 else data)
    (d / "vmlinux.symvers").write_bytes(inputs["vmlinux.symvers"])
    (d / "abi").write_bytes(inputs["abi_gki_aarch64"])
    vendor = inputs[rng.choice(("vendor_v3.img", "vendor_v4.img"))]
    (d / "vendor.img").write_bytes(mutate(rng, vendor) if rng.random() < 0.5 else vendor)
    args = [sys.executable, "-m", "bootverify", "check", "--vendor-kernel-boot",
            str(d / "vendor.img"), "--modules-dir", str(d / "modules"),
            "--symvers", str(d / "vmlinux.symvers"), "--kmi-symbol-list", str(d / "abi")]
    stdout: int | object = subprocess.DEVNULL
    fault = rng.choice(("none", "none", "long-path", "newline", "fifo", "cache-file",
                        "cache-dir-entry", "dev-full", "closed-pipe", "sigterm", "json"))
    if fault == "long-path":
        args[-1] = str(d / ("x" * 300))
    elif fault == "newline":
        args[-1] = str(d / "a\nb")
    elif fault == "fifo":
        os.mkfifo(d / "modules" / "fifo.ko")
    elif fault == "cache-file":
        cache.write_text("not a directory")
    elif fault == "cache-dir-entry":
        (cache / "check" / "reports").mkdir(parents=True)
    elif fault == "json":
        args += ["--json", str(d / "out.json")]
    out_fd: int | None = None
    if fault == "dev-full":
        stdout = open("/dev/full", "w")
    elif fault == "closed-pipe":
        r, out_fd = os.pipe()
        os.close(r)
        stdout = out_fd
    p = subprocess.Popen(args, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env)
    if fault == "sigterm":
        time.sleep(rng.uniform(0, 1.5))
        p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=CLI_SECONDS)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "hang"
    finally:
        if out_fd is not None:
            os.close(out_fd)
        if hasattr(stdout, "close"):
            stdout.close()  # type: ignore[union-attr]
    ok = {0, 1, 2} | ({143, -signal.SIGTERM} if fault == "sigterm" else set())
    if "Traceback" in err or p.returncode not in ok or err.count("\n") > 1 + (
            "warning" in err):
        return f"traceback: exit {p.returncode} ({fault}): {err.strip()[-400:]}"
    left = [str(x) for x in cache.rglob(".*")] if cache.is_dir() else []
    return f"leftover: {left}" if left else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--cli-every", type=int, default=100,
                    help="every Nth case runs the `check` command (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    signal.signal(signal.SIGALRM, _alarm)
    tracebacks = hangs = left = cli = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bv-fuzz-") as tmp:
        work = Path(tmp)
        inputs = seeds(work)
        names = sorted(inputs)
        for n in range(1, args.cases + 1):
            if args.cli_every and n % args.cli_every == 0:
                cli += 1
                what = cli_case(rng, work, inputs, n)
                tracebacks += what.startswith("traceback")
                hangs += what == "hang"
                left += what.startswith("leftover")
                if what:
                    print(f"case {n} (check command): {what}", file=sys.stderr)
                continue
            name = rng.choice(names)
            data = mutate(rng, inputs[name])
            signal.alarm(CASE_SECONDS)
            try:
                readers_for(name)(data)
            except InputError as e:
                if "\n" in str(e):
                    tracebacks += 1
                    print(f"case {n} ({name}): multi-line error {str(e)!r}", file=sys.stderr)
            except Hang:
                hangs += 1
                print(f"case {n} ({name}): no end in {CASE_SECONDS} s", file=sys.stderr)
            except Exception:       # noqa: BLE001 - the count is the point
                tracebacks += 1
                print(f"case {n} ({name}): {traceback.format_exc(limit=-2)}", file=sys.stderr)
                (work / f"failing-{n}-{name}").write_bytes(data)
            finally:
                signal.alarm(0)
        left += len(leftovers(work / "nonexistent"))
    seconds = time.monotonic() - start
    print(f"{args.cases} cases ({cli} through `bootverify check`) in {seconds:.0f} s, "
          f"seed {args.seed}")
    print(f"cases {args.cases}, tracebacks {tracebacks}, hangs {hangs}, leftovers {left}")
    return 1 if tracebacks or hangs or left else 0


if __name__ == "__main__":
    sys.exit(main())
