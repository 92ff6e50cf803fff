"""Agreement between the static prediction and the runtime outcome, and the run reports."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import pytest

from bootverify.android import Stage
from bootverify.crosscheck import Agreement, crosscheck, failed, issues_url
from bootverify.report import junit, run_json, run_text
from bootverify.cli import fail_on_classes, parser
from bootverify.runtime.kmsg import (
    DEFAULT_FAIL_ON,
    FindingClass,
    LinkProblem,
    LinkProblemKind,
    Outcome,
    RuntimeResult,
    classify,
)
from bootverify.static.analysis import Prediction, Problem, ProblemKind, StaticReport
from bootverify.verdict import Boots, DeviceVerdict


def pred(name: str, *problems: Problem) -> Prediction:
    return Prediction(name, f"/m/{name}.ko", problems)


def rt(name: str, outcome: Outcome, *problems: tuple[LinkProblemKind, str],
       errno: int | None = None,
       failed_dependencies: tuple[str, ...] = ()) -> RuntimeResult:
    return RuntimeResult(name, f"/lib/modules/{name}.ko", outcome, errno,
                         tuple(LinkProblem(k, s) for k, s in problems), (f"{name}: line",),
                         "msg", 0.01, failed_dependencies=failed_dependencies)


UNRESOLVED = Problem(ProblemKind.UNRESOLVED, "msleep", "")
LATENT = Problem(ProblemKind.NOT_IN_KMI, "msleep", "", fatal=False)
UNKNOWN = (LinkProblemKind.UNKNOWN_SYMBOL, "msleep")


def agreements(preds: list[Prediction], results: list[RuntimeResult]) -> dict[str, Agreement]:
    return {v.name: v.agreement for v in crosscheck(tuple(preds), results)}


def test_each_agreement():
    preds = [pred("good"), pred("broken", UNRESOLVED), pred("latent", LATENT),
             pred("surprise"), pred("false_alarm", UNRESOLVED), pred("nodev"),
             pred("blocked"), pred("other_symbol", Problem(ProblemKind.UNRESOLVED, "udelay", ""))]
    results = [rt("good", Outcome.LOADED), rt("broken", Outcome.LINK_ERROR, UNKNOWN, errno=2),
               rt("latent", Outcome.LOADED), rt("surprise", Outcome.LINK_ERROR, UNKNOWN, errno=2),
               rt("false_alarm", Outcome.LOADED), rt("nodev", Outcome.INIT_ERROR, errno=19),
               rt("blocked", Outcome.SKIPPED),
               rt("other_symbol", Outcome.LINK_ERROR, UNKNOWN, errno=2),
               rt("unseen", Outcome.LINK_ERROR, UNKNOWN, errno=2)]
    assert agreements(preds, results) == {
        "good": Agreement.OK, "broken": Agreement.CONFIRMED, "latent": Agreement.LATENT,
        "surprise": Agreement.MISSED, "false_alarm": Agreement.UNCONFIRMED,
        "nodev": Agreement.RUNTIME_ONLY, "blocked": Agreement.SKIPPED,
        "other_symbol": Agreement.MISSED, "unseen": Agreement.MISSED}


def test_missing_version_is_confirmed_and_missed_names_the_issue_tracker():
    """A static missing-version is what the kernel's "no symbol version for" + "Unknown symbol
    (err -22)" confirms; a link failure the analysis cannot explain says where to report it."""
    missing = Problem(ProblemKind.MISSING_VERSION, "msleep", "")
    observed = rt("latent", Outcome.LINK_ERROR, (LinkProblemKind.NO_SYMBOL_VERSION, "msleep"),
                  errno=22)
    [v] = crosscheck((pred("latent", missing, LATENT),), [observed])
    assert v.agreement is Agreement.CONFIRMED and v.why == "no-symbol-version msleep"
    [v] = crosscheck((pred("latent", LATENT),), [observed])
    assert v.agreement is Agreement.MISSED
    assert v.why.endswith("please report it at https://github.com/bootverify/bootverify/issues")
    assert issues_url() == "https://github.com/bootverify/bootverify/issues"


def test_kernel_stops_early_so_observed_is_a_subset_of_predicted():
    layout = Problem(ProblemKind.CRC_MISMATCH, "module_layout", "")
    crc = Problem(ProblemKind.CRC_MISMATCH, "printk", "")
    result = rt("old", Outcome.LINK_ERROR, (LinkProblemKind.DISAGREES_ABOUT_VERSION,
                                            "module_layout"), errno=8)
    assert agreements([pred("old", layout, crc)], [result]) == {"old": Agreement.CONFIRMED}


def test_link_errors_caused_by_a_runtime_failure_are_runtime_only_transitively():
    """libcrc32c's init fails in the guest; whatever needs it cannot link, and whatever needs
    that cannot either: none of it is the static analysis' to predict."""
    results = [rt("base", Outcome.INIT_ERROR, errno=2),
               rt("mid", Outcome.LINK_ERROR, (LinkProblemKind.UNKNOWN_SYMBOL, "base_fn"),
                  errno=2, failed_dependencies=("base",)),
               rt("top", Outcome.LINK_ERROR, (LinkProblemKind.UNKNOWN_SYMBOL, "mid_fn"),
                  errno=2, failed_dependencies=("mid",))]
    got = agreements([pred("base"), pred("mid"), pred("top")], results)
    assert got == {"base": Agreement.RUNTIME_ONLY, "mid": Agreement.RUNTIME_ONLY,
                   "top": Agreement.RUNTIME_ONLY}


def test_a_link_failure_of_a_dependency_must_have_been_predicted():
    results = [rt("dep", Outcome.LINK_ERROR, UNKNOWN, errno=2),
               rt("user", Outcome.LINK_ERROR, (LinkProblemKind.UNKNOWN_SYMBOL, "dep_fn"),
                  errno=2, failed_dependencies=("dep",))]
    got = agreements([pred("dep", UNRESOLVED), pred("user")], results)
    assert got == {"dep": Agreement.CONFIRMED, "user": Agreement.MISSED}
    inherited = Problem(ProblemKind.DEPENDENCY_FAILED, "dep_fn", "")
    got = agreements([pred("dep", UNRESOLVED), pred("user", inherited)], results)
    assert got == {"dep": Agreement.CONFIRMED, "user": Agreement.CONFIRMED}


def test_failed_means_not_loaded_or_disagreeing():
    assert not failed(crosscheck((pred("a"), pred("b")),
                                 [rt("a", Outcome.LOADED), rt("b", Outcome.SKIPPED)]))
    assert failed(crosscheck((pred("a"),), [rt("a", Outcome.INIT_ERROR, errno=19)]))
    assert failed(crosscheck((pred("a", UNRESOLVED),), [rt("a", Outcome.LOADED)]))
    # not-found is a failure; unlisted is not, by itself (verdict.py fails sets without lists)
    assert failed(crosscheck((pred("a"),), [rt("a", Outcome.NOT_FOUND)]))
    unlisted = crosscheck((pred("a", UNRESOLVED),), [rt("a", Outcome.UNLISTED)])
    assert not failed(unlisted) and unlisted[0].agreement is Agreement.SKIPPED
    assert unlisted[0].why.endswith("static: fail")
    # latent loads: not a failure
    assert not failed(crosscheck((pred("a", LATENT),), [rt("a", Outcome.LOADED)]))


def test_run_reports():
    preds = (pred("good"), pred("broken", UNRESOLVED), pred("blocked"))
    verdicts = crosscheck(preds, [rt("good", Outcome.LOADED),
                                  rt("broken", Outcome.LINK_ERROR, UNKNOWN, errno=2),
                                  rt("blocked", Outcome.SKIPPED)])
    device = DeviceVerdict(Boots.STOPS, Stage.FIRST, "broken", "first stage stops at broken.ko",
                           ("vendor_ramdisk: broken: link-error",))
    doc = json.loads(json.dumps(run_json(StaticReport("6.1", True, preds), verdicts, "c.log",
                                         device, "normal", ["a note"])))
    assert doc["android"] == {"verdict": "stops", "stage": "first-stage", "stops_at": "broken",
                              "reason": "first stage stops at broken.ko",
                              "failures": ["vendor_ramdisk: broken: link-error"]}
    assert list(doc)[0] == "android" and doc["boot_mode"] == "normal"
    broken = doc["modules"][1]
    assert broken["static"]["verdict"] == "fail" and broken["agreement"] == "confirmed"
    assert broken["runtime"]["outcome"] == "link-error"
    assert broken["runtime"]["errno_name"] == "ENOENT"
    assert broken["runtime"]["problems"] == [{"kind": "unknown-symbol", "symbol": "msleep",
                                              "detail": "", "static_kind": "unresolved"}]
    out = io.StringIO()
    junit(verdicts, out)
    suite = ET.fromstring(out.getvalue().split("\n", 1)[1])
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = suite.find("testcase[@name='broken']/failure")
    assert failure is not None and "broken: line" in (failure.text or "")
    out = io.StringIO()
    junit(verdicts, out, device)
    suite = ET.fromstring(out.getvalue().split("\n", 1)[1])
    assert (suite.get("tests"), suite.get("failures")) == ("4", "2")
    boot = suite.find("testcase[@name='android-boot']/failure")
    assert boot is not None and boot.get("message") == "first stage stops at broken.ko"
    out = io.StringIO()
    run_text(verdicts, out, device, ["a note"])
    assert out.getvalue().startswith("ANDROID: STOPS in first-stage at broken: first stage")


# Real lines: the sample images' vendor_warn (tests/data/samples-findings.console.log; the WARN
# block's first, second and last lines and its headline) and
# github.com/dentproject/dentOS/issues/11 (arm64).
WARN_BLOCK = (
    "[    2.616559] ------------[ cut here ]------------",
    "[    2.616635] vendor_warn: empty calibration table, using defaults",
    "[    2.617028] WARNING: CPU: 1 PID: 36 at /root/.cache/bootverify/images/work-axtwqyol/"
    "modules/gki/vendor_warn/vendor_warn.c:18 vendor_warn_init+0x14/0x1000 [vendor_warn]",
    "[    2.619438] ---[ end trace 0000000000000000 ]---",
)
KASAN_LINE = "[   24.750967] BUG: KASAN: slab-out-of-bounds in __build_skb_around+0xc4/0x100"


def loaded_with(name: str, *lines: str) -> RuntimeResult:
    return classify(name=name, path=f"/lib/modules/{name}.ko", errno=0, kmsg=lines, seconds=0.1)


def test_findings_fail_the_run_only_when_asked():
    verdicts = crosscheck((pred("warns"), pred("kasan")),
                          [loaded_with("warns", *WARN_BLOCK), loaded_with("kasan", KASAN_LINE)])
    assert [v.agreement for v in verdicts] == [Agreement.OK, Agreement.OK]
    assert failed(verdicts)                                   # kasan is in the default
    assert not failed(verdicts[:1])                           # a WARN is not, by default
    assert failed(verdicts[:1], frozenset({FindingClass.WARNING}))
    assert not failed(verdicts, frozenset())

    doc = json.loads(json.dumps(run_json(StaticReport("6.1", True, ()), verdicts, "c.log",
                                         DeviceVerdict(Boots.BOOTS, None, None, "boots", ()),
                                         "normal")))
    assert doc["fail_on"] == sorted(DEFAULT_FAIL_ON)
    assert doc["modules"][0]["runtime"]["outcome"] == "loaded"
    assert doc["modules"][0]["runtime"]["findings"] == [
        {"class": "warning", "line": WARN_BLOCK[2], "context": list(WARN_BLOCK)}]
    assert doc["modules"][1]["runtime"]["findings"] == [
        {"class": "kasan", "line": KASAN_LINE, "context": [KASAN_LINE]}]

    out = io.StringIO()
    junit(verdicts, out)
    suite = ET.fromstring(out.getvalue().split("\n", 1)[1])
    assert suite.get("failures") == "1"
    assert suite.find("testcase[@name='warns']/failure") is None
    assert "finding warning: " + WARN_BLOCK[2] in \
        (suite.findtext("testcase[@name='warns']/system-out") or "")
    failure = suite.find("testcase[@name='kasan']/failure")
    assert failure is not None and failure.get("type") == "loaded/finding"
    assert failure.get("message") == "kasan: " + KASAN_LINE.split("] ", 1)[1]

    out = io.StringIO()
    run_text(verdicts, out, DeviceVerdict(Boots.BOOTS, None, None, "boots", ()))
    text = out.getvalue()
    assert "FINDINGS (2)" in text
    assert "  warns: warning: WARNING: CPU: 1 PID: 36 at /root/.cache/" in text
    assert "  kasan: kasan FAILS: BUG: KASAN: slab-out-of-bounds" in text


def test_fail_on_option():
    assert fail_on_classes("warning, probe") == {FindingClass.WARNING, FindingClass.PROBE}
    assert fail_on_classes("") == frozenset()
    assert fail_on_classes("all") == set(FindingClass)
    args = parser().parse_args(["run", "--boot", "b", "--vendor-kernel-boot", "v",
                                "--symvers", "s"])
    assert args.fail_on == DEFAULT_FAIL_ON
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["run", "--boot", "b", "--vendor-kernel-boot", "v", "--symvers",
                             "s", "--fail-on", "warning,oops"])
    assert e.value.code == 2
