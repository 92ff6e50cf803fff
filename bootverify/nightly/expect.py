"""--expect FILE: the failures a team knows about, so that only a new one fails the nightly.

The file is TOML, one table a module (the kernel's name: basename, '-' as '_') and optionally
the device verdict:

    [modules.vendor_backlight]
    outcome = "link-error"           # a runtime outcome (loaded, link-error, init-error, hung,
                                     # crashed, skipped, not-found, unlisted), and/or
    agreement = "confirmed"          # a cross-check agreement (confirmed, missed, ...)
    reason = "uses msleep, outside the KMI"      # required: why it is known
    link = "https://bugs.example.com/1234"       # optional: where it is tracked

    [android]
    verdict = "stops"                # boots or stops
    stops_at = "vendor_backlight"    # optional
    reason = "..."

Each module of the run is then one of (`Status`):
- pass        it does not fail (crosscheck.fails), and nothing else was expected of it;
- expected    it fails, as its entry says (every key the entry gives matches);
- fixed       its entry expects a failure, and it passes now: reported, and a failure only with
              --strict-expect;
- regression  it fails and no entry says so, or it fails otherwise than its entry says.
Entries naming no module of the inputs are `stale` (a failure with --strict-expect). The
device verdict is judged the same way against [android] (no [android]: stopping is a
regression). A run fails with --expect only on a regression (or, strict, fixed and stale).
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootverify.crosscheck import Agreement, ModuleVerdict, fails, module_fails
from bootverify.errors import InputError, reading
from bootverify.runtime.kmsg import Outcome
from bootverify.verdict import Boots, DeviceVerdict

DEVICE = "android-boot"      # the device verdict's name in every report (JUnit testcase)


class Status(enum.StrEnum):
    PASS = "pass"
    EXPECTED = "expected"
    FIXED = "fixed"
    REGRESSION = "regression"


@dataclass(frozen=True)
class Expected:
    """One entry of the file."""
    name: str
    reason: str
    outcome: Outcome | None = None
    agreement: Agreement | None = None
    link: str = ""

    def describe(self) -> str:
        return "/".join(x for x in (self.outcome and self.outcome.value,
                                    self.agreement and self.agreement.value) if x)


@dataclass(frozen=True)
class ExpectedDevice:
    verdict: Boots
    reason: str
    stops_at: str | None = None
    link: str = ""


@dataclass(frozen=True)
class Expectations:
    path: str
    modules: Mapping[str, Expected]
    device: ExpectedDevice | None = None


@dataclass(frozen=True)
class Judged:
    name: str
    status: Status
    why: str                         # what differs from the expectation, or what matched
    expected: Expected | ExpectedDevice | None = None


@dataclass(frozen=True)
class Judgement:
    path: str
    strict: bool
    device: Judged
    modules: tuple[Judged, ...]
    stale: tuple[str, ...]

    def all(self) -> tuple[Judged, ...]:
        """The modules in load order, then the device (whose verdict follows from them)."""
        return (*self.modules, self.device)

    def with_status(self, status: Status) -> tuple[Judged, ...]:
        return tuple(j for j in self.all() if j.status is status)

    @property
    def failed(self) -> bool:
        if self.with_status(Status.REGRESSION):
            return True
        return self.strict and bool(self.with_status(Status.FIXED) or self.stale)


# --- reading ---

MODULE_KEYS = frozenset({"outcome", "agreement", "reason", "link"})
DEVICE_KEYS = frozenset({"verdict", "stops_at", "reason", "link"})


def _choice(path: Path, where: str, enum_type: type[enum.Enum], value: object) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(str(e.value) for e in enum_type)
        raise InputError(path, f"{where}: {value!r} is not one of {allowed}") from None


def _text(path: Path, where: str, table: Mapping[str, object], key: str,
          required: bool) -> str:
    value = table.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise InputError(path, f"{where}: '{key}' must be {'a non-empty' if required else 'a'} "
                               f"string")
    return value


def _keys(path: Path, where: str, table: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(table, dict):
        raise InputError(path, f"{where}: not a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(path, f"{where}: unknown key(s) {', '.join(unknown)} (allowed: "
                               f"{', '.join(sorted(allowed))})")
    return table


def read_expectations(path: Path) -> Expectations:
    with reading(path), open(path, "rb") as f:
        try:
            doc = tomllib.load(f)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputError(path, f"not TOML: {e}") from None
    unknown = sorted(set(doc) - {"modules", "android"})
    if unknown:
        raise InputError(path, f"unknown table(s) {', '.join(unknown)} (allowed: modules, "
                               f"android)")
    modules = {}
    for name, entry in _keys(path, "modules", doc.get("modules", {}),
                             frozenset(doc.get("modules", {}))).items():
        where = f"modules.{name}"
        entry = _keys(path, where, entry, MODULE_KEYS)
        if "outcome" not in entry and "agreement" not in entry:
            raise InputError(path, f"{where}: needs 'outcome' or 'agreement'")
        modules[name.replace("-", "_")] = Expected(
            name.replace("-", "_"), _text(path, where, entry, "reason", True),
            _choice(path, f"{where}.outcome", Outcome, entry["outcome"])
            if "outcome" in entry else None,
            _choice(path, f"{where}.agreement", Agreement, entry["agreement"])
            if "agreement" in entry else None,
            _text(path, where, entry, "link", False))
    device = None
    if "android" in doc:
        entry = _keys(path, "android", doc["android"], DEVICE_KEYS)
        if "verdict" not in entry:
            raise InputError(path, "android: needs 'verdict' (boots or stops)")
        stops_at = entry.get("stops_at")
        if stops_at is not None and not isinstance(stops_at, str):
            raise InputError(path, "android: 'stops_at' must be a string")
        device = ExpectedDevice(_choice(path, "android.verdict", Boots, entry["verdict"]),
                                _text(path, "android", entry, "reason", True), stops_at,
                                _text(path, "android", entry, "link", False))
    return Expectations(str(path), modules, device)


# --- judging ---

def _matches(e: Expected, v: ModuleVerdict) -> bool:
    return ((e.outcome is None or e.outcome is v.runtime.outcome)
            and (e.agreement is None or e.agreement is v.agreement))


def _expects_failure(e: Expected) -> bool:
    return fails(e.outcome or Outcome.LOADED, e.agreement or Agreement.OK)


def judge_module(v: ModuleVerdict, e: Expected | None) -> Judged:
    got = f"{v.runtime.outcome.value}/{v.agreement.value}"
    if not module_fails(v):
        if e is not None and _expects_failure(e):
            return Judged(v.name, Status.FIXED, f"{got}, expected {e.describe()}", e)
        return Judged(v.name, Status.PASS, got, e)
    if e is None:
        return Judged(v.name, Status.REGRESSION, f"{got}, not expected to fail")
    if _matches(e, v):
        return Judged(v.name, Status.EXPECTED, f"{got}: {e.reason}", e)
    return Judged(v.name, Status.REGRESSION, f"{got}, expected {e.describe()}", e)


def judge_device(device: DeviceVerdict, e: ExpectedDevice | None) -> Judged:
    got = device.verdict.value + (f" at {device.stops_at}" if device.stops_at else "")
    want = "" if e is None else e.verdict.value + (f" at {e.stops_at}" if e.stops_at else "")
    if device.verdict is Boots.BOOTS:
        if e is not None and e.verdict is Boots.STOPS:
            return Judged(DEVICE, Status.FIXED, f"boots, expected {want}", e)
        return Judged(DEVICE, Status.PASS, "boots", e)
    if e is None or e.verdict is Boots.BOOTS:
        return Judged(DEVICE, Status.REGRESSION, f"{got}, not expected to stop", e)
    if e.stops_at is not None and e.stops_at != device.stops_at:
        return Judged(DEVICE, Status.REGRESSION, f"{got}, expected {want}", e)
    return Judged(DEVICE, Status.EXPECTED, f"{got}: {e.reason}", e)


def judge(expectations: Expectations, verdicts: Sequence[ModuleVerdict],
          device: DeviceVerdict, known: Iterable[str], strict: bool = False) -> Judgement:
    """`known`: every module name of the inputs (a narrowed run judges only what it ran, and an
    entry is stale only when no input has the module)."""
    known = set(known) | {v.name for v in verdicts}
    return Judgement(expectations.path, strict,
                     judge_device(device, expectations.device),
                     tuple(judge_module(v, expectations.modules.get(v.name)) for v in verdicts),
                     tuple(sorted(n for n in expectations.modules if n not in known)))
