#!/usr/bin/env python3
"""Benchmark: `bootverify check` vs kmod's `depmod -e -E` on all of Debian's arm64 modules.

Both tools do the same job on the same tree in the same run: read every .ko under
lib/modules/<release> of linux-image-<abi>-arm64 (~3,700 modules), resolve each undefined symbol
against Module.symvers's vmlinux rows and the other modules' exports, and compare __versions CRCs.
depmod is the named baseline (issue 2, section 5). Goals: check cold (empty $BOOTVERIFY_CACHE
results cache) within 3x depmod's wall time, warm re-run within 1x.

    .venv/bin/python benchmarks/bench_check.py [--runs 5] [--abi 6.1.0-56] [--json FILE]

Wall time of each whole command (process start to exit, Python's start-up included for check;
depmod with -n, output discarded), median of --runs runs. Before timing, one untimed depmod run
and one untimed check run bring every .ko into the page cache, so no tool pays for the disk.
"Cold" runs each get a new empty $BOOTVERIFY_CACHE (the Debian package cache is not touched);
"warm" runs all use the cache the last cold run filled. Nothing is asserted: the figures are for
README's Performance section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


sys.path.insert(0, str(REPO / "tests"))      # tests/ is not a package: its helpers by path

import debian_kernels  # noqa: E402  (tests/debian_kernels.py: Debian's kernels, fetched and cached)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict | None = None, cpu: list[float] | None = None) -> float:
    """Wall seconds of cmd; its user+sys CPU seconds (children included) go to `cpu`."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          timeout=300)
    seconds = time.perf_counter() - start
    if cpu is not None:
        cpu.append(_children_cpu() - cpu_before)
    if proc.returncode not in (0, 1):
        tail = proc.stderr.decode(errors="replace")[-1500:]
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}\n{tail}")
    return seconds


def summary(times: list[float], cpu: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "cpu_median": statistics.median(cpu),
            "runs": [round(t, 4) for t in times], "cpu_runs": [round(t, 4) for t in cpu]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per row (median reported)")
    ap.add_argument("--abi", default=debian_kernels.NEWEST, help="Debian kernel ABI, e.g. 6.1.0-56")
    ap.add_argument("--modules-dir", type=Path, help="instead of the ABI's lib/modules/<release>")
    ap.add_argument("--symvers", type=Path, help="instead of the ABI's Module.symvers")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)

    mdir = args.modules_dir or debian_kernels.modules_dir(args.abi)
    symvers = args.symvers or debian_kernels.module_symvers(args.abi)
    n_modules = len(debian_kernels.module_files(mdir))

    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bv-bench-"))
    try:
        root, version = debian_kernels.scratch_root(mdir, work / "root")
        cfgdir = work / "depmod.d"
        cfgdir.mkdir()
        depmod_cmd = ["depmod", "-n", "-b", str(root), "-C", str(cfgdir), "-e", "-E", str(symvers),
                      version]
        check_cmd = debian_kernels.check_command([mdir], symvers=symvers,
                                         json_out=str(work / "report.json"))
        base_env = dict(os.environ)
        base_env.pop("BOOTVERIFY_CACHE", None)

        def env_for(cache: Path) -> dict:
            return dict(base_env, BOOTVERIFY_CACHE=str(cache))

        # Untimed: page cache, and a parity sanity check so both rows did the same work.
        depmod_found = debian_kernels.run_depmod(mdir, symvers=symvers, scratch=work / "warmup")
        warm_cache = work / "cache-warmup"
        timed(check_cmd, env_for(warm_cache))
        report = json.loads((work / "report.json").read_text())
        check_found = debian_kernels.findings_from_report(report)
        parity = all(not debian_kernels.describe_difference(k, getattr(depmod_found, k),
                                                    getattr(check_found, k))
                     for k in ("unresolved", "crc_mismatch"))
        shutil.rmtree(warm_cache)

        names = ["depmod -e -E", "check, cold cache", "check, warm cache", "check --no-cache"]
        rows: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(args.runs):
            rows[names[0]].append(timed(depmod_cmd, cpu=cpu[names[0]]))
        cache = None
        for i in range(args.runs):
            cache = work / f"cache-cold-{i}"
            rows[names[1]].append(timed(check_cmd, env_for(cache), cpu[names[1]]))
        for _ in range(args.runs):
            rows[names[2]].append(timed(check_cmd, env_for(cache), cpu[names[2]]))
        for _ in range(args.runs):
            rows[names[3]].append(timed(check_cmd + ["--no-cache"],
                                        env_for(work / "cache-unused"), cpu[names[3]]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    figures = {name: summary(times, cpu[name]) for name, times in rows.items()}
    base = figures["depmod -e -E"]["median"]
    goals = {"check, cold cache": 3.0, "check, warm cache": 1.0}

    print(f"bootverify check vs depmod: {n_modules} modules of {mdir}")
    print(f"symbols: {symvers}")
    print(f"{platform.python_implementation()} {platform.python_version()}, "
          f"{debian_kernels.depmod_version()}, {os.cpu_count()} CPUs (load average at start "
          f"{load[0]:.2f}, at end {os.getloadavg()[0]:.2f}), {args.runs} runs per row; "
          f"parity on this tree: {'same pairs' if parity else 'DIFFERENT PAIRS'} "
          f"({len(depmod_found.unresolved)} unresolved, {len(depmod_found.crc_mismatch)} "
          f"crc-mismatch)")
    print()
    print(f"| {'command':<20} | {'median s':>8} | {'min s':>6} | {'max s':>6} | {'x depmod':>8} "
          f"| {'goal':<11} | {'CPU s':>6} |")
    print(f"|{'-' * 22}|{'-' * 9}:|{'-' * 7}:|{'-' * 7}:|{'-' * 9}:|{'-' * 13}|{'-' * 7}:|")
    for name, fig in figures.items():
        ratio = fig["median"] / base
        goal = goals.get(name)
        verdict = "" if goal is None else (f"<={goal:g}x " + ("met" if ratio <= goal else "MISSED"))
        print(f"| {name:<20} | {fig['median']:8.3f} | {fig['min']:6.3f} | {fig['max']:6.3f} "
              f"| {ratio:8.2f} | {verdict:<11} | {fig['cpu_median']:6.3f} |")

    if args.json:
        args.json.write_text(json.dumps({
            "modules": n_modules, "modules_dir": str(mdir), "symvers": str(symvers),
            "runs": args.runs, "cpus": os.cpu_count(), "loadavg_start": load[0],
            "python": platform.python_version(),
            "depmod": debian_kernels.depmod_version(), "parity": parity,
            "figures": figures,
            "ratios": {name: fig["median"] / base for name, fig in figures.items()},
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
