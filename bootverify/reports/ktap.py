"""KTAP (Documentation/dev-tools/ktap.rst, version 1) for kselftest-style consumers: one test a
module after `android-boot`, `ok`/`not ok`, `# SKIP` for modules not given to the kernel on
purpose, `# XFAIL` (as kselftest's ksft_test_result_xfail) for a failure --expect expects;
diagnostics (the cause, the kernel's lines) as `#` lines before each result line. An
infrastructure failure or interrupt adds a failing `bootverify-run` test and `Bail out!`."""

from __future__ import annotations

from typing import TextIO

from bootverify.crosscheck import module_fails
from bootverify.nightly.expect import DEVICE, Status
from bootverify.reports.junit import RUN_CASE
from bootverify.reports.model import RunRecord
from bootverify.runtime.kmsg import Outcome
from bootverify.verdict import Boots


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("#", "\\#")


def write_ktap(run: RunRecord, out: TextIO) -> None:
    judged = {j.name: j for j in run.judgement.all()} if run.judgement else {}
    tests = len(run.verdicts) + 1 + (run.error is not None)
    out.write(f"KTAP version 1\n# bootverify {_one_line(run.name)}: kernel {run.release}\n"
              f"1..{tests}\n")

    def result(n: int, name: str, failing: bool, diagnostic: str, skip: str = "") -> None:
        j = judged.get(name)
        if diagnostic:
            out.write(f"# {_one_line(diagnostic)}\n")
        if failing and j is not None and j.status is Status.EXPECTED:
            out.write(f"ok {n} {name} # XFAIL {_one_line(j.why)}\n")
        elif skip and not failing:
            out.write(f"ok {n} {name} # SKIP {_one_line(skip)}\n")
        else:
            out.write(f"{'not ok' if failing else 'ok'} {n} {name}\n")

    result(1, DEVICE, run.device.verdict is Boots.STOPS, run.device.reason)
    for n, v in enumerate(run.verdicts, 2):
        failing = module_fails(v)
        for line in v.runtime.kmsg if failing else ():
            out.write(f"# {_one_line(line)}\n")
        skip = v.why if v.runtime.outcome in (Outcome.SKIPPED, Outcome.UNLISTED) else ""
        result(n, v.name, failing,
               f"{v.name}: {v.runtime.outcome.value}: {v.why}" if failing else "", skip)
    if run.error is not None:
        out.write(f"# {_one_line(run.error.message)}\nnot ok {tests} {RUN_CASE}\n"
                  f"Bail out! {_one_line(run.error.kind.value)}: "
                  f"{_one_line(run.error.message)}\n")
