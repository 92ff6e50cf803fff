#!/usr/bin/env python3
"""Benchmark: several guests at once (issue 13) and parallel loading in the guest (issue 9).

    .venv/bin/python benchmarks/bench_jobs.py jobs [--module-timeout 10] [--no-shards] [--json F]
    .venv/bin/python benchmarks/bench_jobs.py jobs --plan-only
    .venv/bin/python benchmarks/bench_jobs.py waves [--modules 600] [--smp 1,2,4] [--json FILE]

`jobs`: all of Debian 6.1.0-56's arm64 modules (modules.order order) packed into a
vendor_kernel_boot.img, run by `bootverify run` as a user runs it, in the same invocation:
`--jobs 1` (the baseline: one guest, -smp 2), `--jobs 2` (two guests, -smp 1 each: the host's
two cores shared out; the plan cut by the loads), `--jobs 2 --baseline jobs1.json` (cut by the
seconds each module took in --jobs 1's report, as a nightly cuts by last night's), and a 4-way
`--shard I/4 --jobs 1 --baseline jobs1.json` split run one shard after another, then
`bootverify merge`d. First, without booting, the split `bootverify plan --shards 2` and
`--shards 4` print: loads per part, the share loaded twice, and the bound the busiest part puts
on --jobs 2 (modules / its loads); `--plan-only` stops there. Figures: wall times and the ratio
to `--jobs 1` (goal: --jobs 2 at least 1.8x faster), the median guest time per loaded module in
each (the per-module cost inside a guest must not change), and whether the outcomes (per
module: outcome, errno, problems, agreement; the device verdict) equal --jobs 1's.

`waves`: the first --modules modules of kernel/{fs,net,lib,crypto} (modules.order order, tests
and kunit aside) with their dependencies, in images whose bootconfig asks for parallel loading
(androidboot.load_modules_parallel = "true") and in the same images without it, run through
the API (loader.run_plan) with each -smp of --smp, alternating; the load time is the run's wall
time less its boots. Figures: sequential vs waves for each CPU count, and the waves' count;
then each module whose outcome was not the same in all runs, with what it was each way.

Nothing is asserted; the figures go into benchmarks/README.md and README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))      # tests/ is not a package: its helpers by path

import debian_kernels  # noqa: E402  (tests/debian_kernels.py: Debian's kernels, fetched and cached)
import packing  # noqa: E402  (tests/packing.py: pack_debian_images, assert_clean)

from bootverify.readers.modules import module_name  # noqa: E402
from bootverify.runtime import loader, vm  # noqa: E402

GOAL_JOBS = 1.8
RUN_TIMEOUT = 3600
DEBIAN_DIRS = ("kernel/fs/", "kernel/net/", "kernel/lib/", "kernel/crypto/")
PARALLEL = b'androidboot.hardware = bvdebian\nandroidboot.load_modules_parallel = "true"\n'


def say(line: str = "") -> None:
    print(line, flush=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def outcomes(doc: dict) -> list:
    """As tests/test_run_jobs.py compares runs."""
    return [(m["runtime"]["origin"], m["name"], m["runtime"]["outcome"], m["runtime"]["errno"],
             [(p["kind"], p["symbol"]) for p in m["runtime"]["problems"]], m["agreement"])
            for m in doc["modules"]] + [
        [doc["android"][k] for k in ("verdict", "stage", "stops_at", "failures")]]


def per_module(doc: dict) -> float:
    """Median guest seconds of a module that loaded."""
    return statistics.median(m["runtime"]["seconds"] for m in doc["modules"]
                             if m["runtime"]["outcome"] == "loaded")


def cli(argv: list[str | Path]) -> tuple[int, float, str]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bootverify", *map(str, argv)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bootverify {argv[0]} failed ({proc.returncode}): {proc.stderr}")
    return proc.returncode, time.monotonic() - start, proc.stdout


def debian() -> tuple[Path, str, list[str]]:
    root = debian_kernels.image_root(debian_kernels.NEWEST)
    release = debian_kernels.release(debian_kernels.NEWEST)
    order = (root / "lib" / "modules" / release / "modules.order").read_text().split()
    return root, release, order


def bench_jobs(args: argparse.Namespace, out: dict) -> None:
    root, release, order = debian()
    names = [module_name(p) for p in order]
    boot_img, vendor_img = packing.pack_debian_images(args.work / "img", kernel_root=root,
                                                      release=release, load=names)
    inputs: list[str | Path] = [
        "--boot", boot_img, "--vendor-kernel-boot", vendor_img,
        "--symvers", debian_kernels.module_symvers(debian_kernels.NEWEST)]
    common = [*inputs, "--module-timeout", str(args.module_timeout)]
    for n in (2, 4):
        cli(["plan", *inputs, "--shards", str(n), "--json", args.work / f"plan{n}.json"])
        shards = json.loads((args.work / f"plan{n}.json").read_text())["shards"]
        loads = [s["loads"] for s in shards]
        out[f"split{n}"] = {"loads": loads, "twice": sum(loads) / len(names) - 1,
                            "bound": len(names) / max(loads)}
        say(f"split {n}: loads {', '.join(map(str, loads))} of {len(names)} modules "
            f"({out[f'split{n}']['twice']:.1%} loaded twice); busiest part bounds the "
            f"speed-up at {out[f'split{n}']['bound']:.2f}x")
    if args.plan_only:
        return

    def run(tag: str, *extra: str) -> tuple[float, dict]:
        report = args.work / f"{tag}.json"
        say(f"  {tag}: load average {loadavg()}")
        _, seconds, stdout = cli(["run", *common, "--json", report,
                                  "--console-log", args.work / f"{tag}.log", *extra])
        say(f"    {seconds:.1f} s; {stdout.strip().splitlines()[-1]}")
        return seconds, json.loads(report.read_text())

    say(f"jobs: {len(names)} modules of Debian {release}, module timeout "
        f"{args.module_timeout:g} s, {os.cpu_count()} host CPUs")
    t1, one = run("jobs1", "--jobs", "1")
    t2, two = run("jobs2", "--jobs", "2")
    # --jobs 1's report as last night's: the plan cut by the seconds each module took in it
    baseline = ["--baseline", str(args.work / "jobs1.json")]
    t2t, timed = run("jobs2-baseline", "--jobs", "2", *baseline)
    shard_s = []
    for i in range(1, 5 if args.shards else 1):
        s, _ = run(f"shard{i}", "--shard", f"{i}/4", "--jobs", "1", *baseline)
        shard_s.append(s)
    merge_s, merged = 0.0, one
    if args.shards:
        _, merge_s, _ = cli(["merge", *(args.work / f"shard{i}.json" for i in range(1, 5)),
                             "--json", args.work / "merged.json"])
        merged = json.loads((args.work / "merged.json").read_text())

    def differences(doc: dict) -> list:
        return [a for a, b in zip(outcomes(doc), outcomes(one), strict=False) if a != b][:10]

    out["jobs"] = {
        "modules": len(names), "jobs1_seconds": t1, "jobs2_seconds": t2, "ratio": t1 / t2,
        "jobs2_baseline_seconds": t2t, "ratio_baseline": t1 / t2t,
        "goal": GOAL_JOBS, "per_module_jobs1": per_module(one), "per_module_jobs2": per_module(two),
        "per_module_jobs2_baseline": per_module(timed),
        "jobs2_same_outcomes": outcomes(two) == outcomes(one),
        "jobs2_baseline_same_outcomes": outcomes(timed) == outcomes(one),
        "shard_seconds": shard_s, "merge_seconds": merge_s,
        "merged_same_outcomes": outcomes(merged) == outcomes(one),
        "differences_jobs2": differences(two), "differences_jobs2_baseline": differences(timed),
        "differences_merged": differences(merged)}
    j = out["jobs"]
    for tag, ratio, same, seconds in (
            ("--jobs 2", j["ratio"], j["jobs2_same_outcomes"], t2),
            ("--jobs 2 --baseline jobs1.json", j["ratio_baseline"],
             j["jobs2_baseline_same_outcomes"], t2t)):
        say(f"  --jobs 1 {t1:.1f} s, {tag} {seconds:.1f} s: {ratio:.2f}x (goal >= {GOAL_JOBS}x: "
            f"{'met' if ratio >= GOAL_JOBS else 'NOT met'}); same outcomes: {same}")
    say(f"  per loaded module in the guest: {j['per_module_jobs1'] * 1000:.1f} ms (--jobs 1), "
        f"{j['per_module_jobs2'] * 1000:.1f} ms (--jobs 2), "
        f"{j['per_module_jobs2_baseline'] * 1000:.1f} ms (--jobs 2 --baseline)")
    if not args.shards:
        return
    each = ", ".join(f"{s:.0f}" for s in shard_s)
    say(f"  4 shards (--baseline jobs1.json) one after another {sum(shard_s):.1f} s ({each}), "
        f"merge {merge_s:.1f} s; merged equals --jobs 1: {j['merged_same_outcomes']}")


def bench_waves(args: argparse.Namespace, out: dict) -> None:
    root, release, order = debian()
    names = [module_name(p) for p in order if p.startswith(DEBIAN_DIRS)
             and not re.match(r"(test_|.*_test$|tcrypt$|.*kunit)", module_name(p))]
    names = names[:args.modules]
    plans = {}
    for tag, bootconfig in (("sequential", b"androidboot.hardware = bvdebian\n"),
                            ("waves", PARALLEL)):
        boot_img, vendor_img = packing.pack_debian_images(
            args.work / tag, kernel_root=root, release=release, load=names, bootconfig=bootconfig)
        plans[tag] = loader.prepare_run(boot_img, vendor_img)
    say(f"waves: {len(plans['waves'][1].lines)} loads of {len(names)} listed modules, "
        f"{len(plans['waves'][1].waves)} waves (sequential: {len(plans['sequential'][1].lines)} "
        f"loads)")
    figures: dict[str, dict[str, list[float]]] = {}
    seen: dict[str, dict[str, set[str]]] = {}       # module -> tag -> outcomes over the runs
    dependents: set[str] = set()                    # failed, in some run, as a dependency did
    for rnd in range(args.rounds):
        for smp in args.smp:
            for tag, (guest, plan) in plans.items():
                config = vm.VMConfig(smp=smp, boot_timeout=300.0)
                rep = loader.run_plan(guest, plan, config=config, module_timeout=30.0)
                load = rep.seconds - sum(b.seconds for b in rep.boots)
                bad = sum(1 for r in rep.results if r.outcome.value not in ("loaded", "skipped"))
                figures.setdefault(f"smp{smp}", {}).setdefault(tag, []).append(load)
                for r in rep.results:
                    seen.setdefault(r.name, {}).setdefault(tag, set()).add(
                        r.outcome.value + (f" {r.errno_name}" if r.errno else ""))
                    if r.failed_dependencies:
                        dependents.add(r.name)
                say(f"  round {rnd + 1} -smp {smp} {tag:10}: load {load:6.2f} s "
                    f"({len(rep.boots)} boot(s), {bad} not loaded; load average {loadavg()})")
    out["waves"] = {k: {t: statistics.median(v) for t, v in d.items()}
                    for k, d in figures.items()}
    for k, d in out["waves"].items():
        say(f"  {k}: sequential {d['sequential']:.2f} s, waves {d['waves']:.2f} s: "
            f"{d['sequential'] / d['waves']:.2f}x")
    # The modules whose outcome was not one and the same in every run, either way (README.md,
    # "Parallel loading": which differences are the device's own). A module that fails only
    # because a dependency did not load is left out: its dependency is listed.
    out["waves_differences"] = {
        n: {t: sorted(v) for t, v in d.items()} for n, d in sorted(seen.items())
        if len(set().union(*d.values())) > 1 and n not in dependents}
    for n, d in out["waves_differences"].items():
        say(f"  differs: {n}: " + "; ".join(f"{t} {' / '.join(v)}" for t, v in d.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("jobs", "waves"))
    ap.add_argument("--module-timeout", type=float, default=10.0)
    ap.add_argument("--modules", type=int, default=600)
    ap.add_argument("--smp", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-shards", dest="shards", action="store_false",
                    help="jobs: skip the 4-way shard split")
    ap.add_argument("--plan-only", action="store_true",
                    help="jobs: pack the images and print the splits, boot nothing")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict = {"host_cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bv-bench-jobs-") as tmp:
        args.work = Path(tmp)
        {"jobs": bench_jobs, "waves": bench_waves}[args.what](args, out)
    packing.assert_clean()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
