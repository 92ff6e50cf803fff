"""A previous `bootverify run --json` report (last night's), read for --baseline and
--rerun-failed: per module its outcome, agreement and whether it failed (crosscheck.fails, the
same rule as tonight's). Reports of schema version 1 (no `meta`) read the same: only `modules`
[{name, runtime.outcome, agreement}] is used."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bootverify.crosscheck import Agreement, fails
from bootverify.errors import InputError, reading
from bootverify.runtime.kmsg import Outcome


@dataclass(frozen=True)
class PreviousModule:
    name: str
    outcome: Outcome
    agreement: Agreement

    @property
    def failed(self) -> bool:
        return fails(self.outcome, self.agreement)


@dataclass(frozen=True)
class PreviousReport:
    path: str
    modules: Mapping[str, PreviousModule]
    error: str | None = None          # the previous run ended early (partial report)

    def failed(self) -> frozenset[str]:
        return frozenset(n for n, m in self.modules.items() if m.failed)


def read_previous(path: Path) -> PreviousReport:
    with reading(path), open(path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(path, f"not a JSON report: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("modules"), list):
        raise InputError(path, "not a `bootverify run` JSON report (no modules list)")
    modules = {}
    for i, m in enumerate(doc["modules"]):
        try:
            modules[m["name"]] = PreviousModule(m["name"], Outcome(m["runtime"]["outcome"]),
                                                Agreement(m["agreement"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"modules[{i}]: no name, runtime.outcome and agreement of a "
                                   f"`bootverify run` report") from None
    error = doc.get("error")
    return PreviousReport(str(path), modules,
                          error.get("message") if isinstance(error, dict) else None)
