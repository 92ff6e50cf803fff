"""Everything the reports of one run show, in one record: what cli.py hands every format."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bootverify.crosscheck import ModuleVerdict, failed
from bootverify.nightly.baseline import Comparison
from bootverify.nightly.expect import Judgement
from bootverify.plan.model import LoadPlan
from bootverify.plan.shards import Part
from bootverify.runtime.kmsg import DEFAULT_FAIL_ON, Crash, FindingClass
from bootverify.static.analysis import StaticReport
from bootverify.verdict import DeviceVerdict


class ErrorKind(enum.StrEnum):
    INFRASTRUCTURE = "infrastructure"    # exit 2: qemu missing, no agent prompt, ...
    INTERRUPTED = "interrupted"          # exit 128 + signal: Ctrl-C, SIGTERM, SIGHUP


@dataclass(frozen=True)
class RunError:
    """Why the run ended before every module had its outcome: the report is partial."""
    kind: ErrorKind
    message: str
    exit_status: int


@dataclass(frozen=True)
class ShardRun:
    """What `bootverify merge` needs of a shard (`run --shard I/N`; 1/1 without): the split it
    is a part of and the load-list entries that failed on its guests."""
    index: int
    count: int
    split: Sequence[Part]
    failing: Mapping[int, str]            # load-list entry -> why (verdict.entry_failures)
    notes: Sequence[str] = ()             # what only a shard says (merge leaves them out)
    crashes: Mapping[int, Crash] = field(default_factory=dict)    # entry -> how its load
                                                                  # crashed or hung
                                                                  # (entry_crashes)


@dataclass(frozen=True)
class RunRecord:
    name: str                             # --name, or the device (bootconfig hardware)
    started: datetime.datetime
    seconds: float                        # the whole run, host wall
    static: StaticReport
    verdicts: Sequence[ModuleVerdict]     # the modules with a runtime outcome, in load order
    device: DeviceVerdict
    boot_mode: str | None
    notes: Sequence[str]
    console_log: str
    release: str
    meta: Mapping[str, Any]               # nightly.meta.RunMeta.json()
    judgement: Judgement | None = None    # --expect
    comparison: Comparison | None = None  # --baseline
    error: RunError | None = None
    plan: LoadPlan | None = None          # what was run (None: the run ended before a plan)
    fail_on: frozenset[FindingClass] = DEFAULT_FAIL_ON    # --fail-on
    shard: ShardRun | None = None         # None: the run ended before a plan

    @property
    def hostname(self) -> str:
        return str(self.meta.get("host", {}).get("hostname") or "localhost")

    def input_hashes(self) -> list[tuple[str, str]]:
        return [(i["role"], i["sha256"]) for i in self.meta.get("inputs", ())]


def failed_run(run: RunRecord) -> bool:
    """Exit 1 (of `run`, and of `merge` for the merged record): with --expect, a regression
    (strict: also fixed, stale); without, any failure (crosscheck.failed) or a device verdict
    that fails."""
    if run.judgement is not None:
        return run.judgement.failed
    return failed(run.verdicts, run.fail_on) or run.device.failed
