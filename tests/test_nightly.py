"""The nightly parts of `run`, pure (no qemu): --expect, --baseline, --rerun-failed/--only/
--exclude, the summary, JUnit against both schemas, KTAP, KCIDB, the CLI's checks of its
options and output paths. tests/test_nightly_ci.py runs them for real on the sample images."""

from __future__ import annotations

import datetime
import io
import json
import subprocess
import sys
from pathlib import Path

import kcidb_io
import pytest
from lxml import etree
from test_crosscheck import pred, rt
from test_plan import loads, plan

from bootverify.android import Stage
from bootverify.crosscheck import crosscheck
from bootverify.errors import InputError
from bootverify.nightly.baseline import Change, compare
from bootverify.nightly.expect import DEVICE, Status, judge, read_expectations
from bootverify.nightly.previous import read_previous
from bootverify.nightly.selection import Selection, narrow
from bootverify.reports.document import run_document
from bootverify.reports.junit import write_junit
from bootverify.reports.kcidb import kcidb_json
from bootverify.reports.ktap import write_ktap
from bootverify.reports.model import ErrorKind, RunError, RunRecord
from bootverify.reports.summary import CELL_WIDTH, summary_text
from bootverify.runtime.kmsg import LinkProblemKind, Outcome
from bootverify.static.analysis import Problem, ProblemKind, StaticReport
from bootverify.verdict import Boots, DeviceVerdict

XSD = Path(__file__).parent / "data" / "junit-xsd"
UNKNOWN = (LinkProblemKind.UNKNOWN_SYMBOL, "msleep")
UNRESOLVED = Problem(ProblemKind.UNRESOLVED, "msleep", "")
STOPS = DeviceVerdict(Boots.STOPS, Stage.FIRST, "known", "first stage stops at known.ko",
                      ("vendor_ramdisk: known: link-error",))
BOOTS = DeviceVerdict(Boots.BOOTS, None, None, "first stage loads all 2 listed module(s)", ())
EXPECT = """
[android]
verdict = "stops"
stops_at = "known"
reason = "known is broken"

[modules.known]
outcome = "link-error"
reason = "uses msleep"
link = "https://bugs.example.com/1"

[modules.fixed]
outcome = "link-error"
reason = "was broken"

[modules.changed]
outcome = "hung"
reason = "hangs"

[modules.gone_module]
agreement = "runtime-only"
reason = "not in the inputs any more"
"""


def verdicts():
    preds = (pred("good"), pred("known", UNRESOLVED), pred("fixed"), pred("new", UNRESOLVED),
             pred("changed"))
    return crosscheck(preds, [rt("good", Outcome.LOADED),
                              rt("known", Outcome.LINK_ERROR, UNKNOWN, errno=2),
                              rt("fixed", Outcome.LOADED),
                              rt("new", Outcome.LINK_ERROR, UNKNOWN, errno=2),
                              rt("changed", Outcome.CRASHED)])


def expectations(tmp_path: Path, text: str = EXPECT):
    (tmp_path / "expect.toml").write_text(text)
    return read_expectations(tmp_path / "expect.toml")


# --- --expect ---

@pytest.mark.parametrize("text,problem", [
    ("[modules.a\n", "not TOML"),
    ("[modules.a]\noutcome = 'link-error'\n", "'reason' must be a non-empty string"),
    ("[modules.a]\nreason = 'x'\n", "needs 'outcome' or 'agreement'"),
    ("[modules.a]\noutcome = 'broken'\nreason = 'x'\n", "'broken' is not one of loaded"),
    ("[modules.a]\noutcome = 'hung'\nreason = 'x'\nbug = 1\n", "unknown key(s) bug"),
    ("[android]\nreason = 'x'\n", "needs 'verdict'"),
    ("[device]\n", "unknown table(s) device"),
])
def test_an_expectations_file_is_checked(tmp_path, text, problem):
    with pytest.raises(InputError) as e:
        expectations(tmp_path, text)
    assert e.value.path == str(tmp_path / "expect.toml") and problem in e.value.problem


def test_only_an_unexpected_failure_fails_the_run(tmp_path):
    e = expectations(tmp_path)
    j = judge(e, verdicts(), STOPS, ["good", "known", "fixed", "new", "changed"])
    status = {x.name: x.status for x in j.all()}
    assert status == {"good": Status.PASS, "known": Status.EXPECTED, "fixed": Status.FIXED,
                      "new": Status.REGRESSION, "changed": Status.REGRESSION,
                      DEVICE: Status.EXPECTED}
    assert j.stale == ("gone_module",) and j.failed
    # the regressions come in load order, the device last
    assert [x.name for x in j.with_status(Status.REGRESSION)] == ["new", "changed"]
    assert "crashed/runtime-only, expected hung" in j.modules[4].why
    # without the regressions the run passes; --strict-expect fails it on fixed and stale
    ok = [v for v in verdicts() if v.name not in ("new", "changed")]
    assert not judge(e, ok, STOPS, []).failed
    assert judge(e, ok, STOPS, [], strict=True).failed
    # the device: stopping elsewhere is a regression, booting is fixed
    moved = DeviceVerdict(Boots.STOPS, Stage.FIRST, "good", "stops at good", ())
    assert judge(e, ok, moved, []).device.status is Status.REGRESSION
    assert judge(e, ok, BOOTS, []).device.status is Status.FIXED


# --- --baseline, --rerun-failed ---

def test_baseline_names_every_change(tmp_path):
    previous = {"modules": [
        {"name": "good", "runtime": {"outcome": "loaded"}, "agreement": "ok"},
        {"name": "known", "runtime": {"outcome": "link-error"}, "agreement": "confirmed"},
        {"name": "fixed", "runtime": {"outcome": "init-error"}, "agreement": "runtime-only"},
        {"name": "new", "runtime": {"outcome": "loaded"}, "agreement": "ok"},
        {"name": "old", "runtime": {"outcome": "loaded"}, "agreement": "ok"},
        {"name": "unselected", "runtime": {"outcome": "hung"}, "agreement": "runtime-only"}]}
    (tmp_path / "prev.json").write_text(json.dumps(previous))
    prev = read_previous(tmp_path / "prev.json")
    assert prev.failed() == {"known", "fixed", "unselected"}
    c = compare(prev, verdicts(), ["unselected"])
    assert {x.name: x.change for x in c.changes} == {
        "good": Change.STILL_PASSING, "known": Change.STILL_FAILING, "fixed": Change.FIXED,
        "new": Change.NEW_FAILURE, "changed": Change.NEW_MODULE, "old": Change.GONE}
    (tmp_path / "bad.json").write_text('{"modules": [{"name": "x"}]}')
    with pytest.raises(InputError, match="modules\\[0\\]"):
        read_previous(tmp_path / "bad.json")


DEPS = {"lib/modules/a.ko": "", "lib/modules/b.ko": "", "lib/modules/c.ko": "",
        "lib/modules/d.ko": "", "lib/modules/e.ko": "",
        "lib/modules/modules.dep": "a.ko: b.ko c.ko\nb.ko: c.ko\nc.ko:\nd.ko:\ne.ko:\n",
        "lib/modules/modules.load": "d.ko\na.ko\ne.ko\n"}


def test_a_narrowed_run_brings_the_dependencies_along():
    full = plan(DEPS)
    assert loads(full) == ["d", "c", "b", "a", "e"]
    only_a = narrow(full, Selection(only=("a",)))
    assert loads(only_a) == ["c", "b", "a"]
    assert [s.line for s in only_a.steps] == [1, 2, 3] and len(only_a.lines) == 3
    assert [x.name for x in only_a.listed] == ["a"] and "narrowed run" in only_a.notes[-1]
    # --exclude leaves out a module but not as another's dependency; --rerun-failed
    assert loads(narrow(full, Selection(exclude=("b", "d")))) == ["c", "b", "a", "e"]
    assert loads(narrow(full, Selection(rerun=frozenset({"e", "c"}), rerun_from="p"))) == \
        ["c", "e"]
    assert loads(narrow(full, Selection(only=("[de]",)))) == ["d", "e"]
    with pytest.raises(InputError, match="no module matches x"):
        narrow(full, Selection(only=("x",)))


# --- the reports ---

def record(tmp_path: Path, **kw) -> RunRecord:
    vs = verdicts()
    e = expectations(tmp_path)
    meta = {"schema_version": 2, "tool_version": "0.1.0", "host": {"hostname": "ci-1"},
            "qemu": {"version": "QEMU emulator version 7.2.15", "accel": "tcg"},
            "inputs": [{"role": "boot", "path": "boot.img", "sha256": "ab" * 32}],
            "boots": [{"seconds": 1.5}]}
    fields = dict(name="bvsample", started=datetime.datetime(2026, 12, 1, 2, 0, 0,
                                                             tzinfo=datetime.UTC),
                  seconds=4.3, static=StaticReport("6.1.192", True, ()), verdicts=vs,
                  device=STOPS, boot_mode="normal", notes=("a note",),
                  console_log="out/console.log", release="6.1.192", meta=meta,
                  judgement=judge(e, vs, STOPS, [v.name for v in vs]))
    return RunRecord(**(fields | kw))


def junit_of(run: RunRecord) -> bytes:
    out = io.StringIO()
    write_junit(run, out)
    return out.getvalue().encode()


@pytest.mark.parametrize("schema", ["junit-10.xsd", "ant-junit.xsd"])
def test_junit_is_valid_against_both_schemas(tmp_path, schema):
    validator = etree.XMLSchema(etree.parse(str(XSD / schema)))
    weird = rt("new", Outcome.LINK_ERROR, UNKNOWN, errno=2)
    weird = type(weird)(**(weird.__dict__ | {"kmsg": ("new: \x1b[0mbad \x00 byte",)}))
    vs = crosscheck((pred("new", UNRESOLVED),), [weird])
    for run in (record(tmp_path),
                record(tmp_path, error=RunError(ErrorKind.INTERRUPTED, "interrupted by SIGTERM",
                                                143)),
                record(tmp_path, verdicts=vs, judgement=None)):
        doc = etree.fromstring(junit_of(run))
        assert validator.validate(doc), validator.error_log
    suite = etree.fromstring(junit_of(record(tmp_path)))
    assert (suite.get("name"), suite.get("hostname"), suite.get("timestamp"),
            suite.get("time")) == ("bvsample", "ci-1", "2026-12-01T02:00:00", "4.300")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["kernel_release"] == "6.1.192" and props["android.verdict"] == "stops"
    assert props["sha256.boot"] == "ab" * 32 and props["expect.regression"] == "new changed"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["known"][0].tag == "skipped"          # expected: does not fail the job
    assert cases["new"][0].tag == "failure" and "regression" in cases["new"][0].get("message")
    assert cases[DEVICE][0].tag == "skipped"            # stops where expected
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("6", "2", "2")
    errored = etree.fromstring(junit_of(record(tmp_path, error=RunError(
        ErrorKind.INFRASTRUCTURE, "no agent prompt", 2))))
    assert errored.get("errors") == "1"
    assert errored.find("testcase[@name='bootverify-run']/error").get("type") == \
        "infrastructure"


def test_the_summary_groups_root_causes_and_names_regressions_first(tmp_path):
    text = summary_text(record(tmp_path))
    first = text.splitlines()[0]
    assert first.startswith("NIGHTLY: RED: 2 regression(s): new (link-error/confirmed, not "
                            "expected to fail); changed (crashed/runtime-only, expected hung)")
    # 322 modules against a stale vmlinux.symvers: one line, not 322
    layout = Problem(ProblemKind.CRC_MISMATCH, "module_layout",
                     "built against 0x28c5e94f, vmlinux has 0xea759d7f")
    names = [f"pixel_{i}" for i in range(322)]
    vs = crosscheck(tuple(pred(n, layout) for n in names), [
        rt(n, Outcome.LINK_ERROR, (LinkProblemKind.DISAGREES_ABOUT_VERSION, "module_layout"),
           errno=8) for n in names])
    run = record(tmp_path, verdicts=vs, judgement=None)
    text = summary_text(run)
    assert text.startswith("ANDROID: STOPS")
    assert ("322/322 fail module_layout: modules built for another kernel (built against "
            "0x28c5e94f, vmlinux has 0xea759d7f): pixel_0, pixel_1") in text
    assert "top symbols: module_layout (322 module(s))" in text
    assert max(len(line) for line in text.splitlines()) < 3 * CELL_WIDTH
    doc = run_document(run)
    assert doc["summary"]["root_causes"][0]["count"] == 322
    assert doc["modules"][0]["runtime"]["problems"][0]["static_kind"] == "crc-mismatch"
    assert list(doc)[0] == "android" and doc["error"] is None


def test_ktap_and_kcidb(tmp_path):
    out = io.StringIO()
    write_ktap(record(tmp_path, error=RunError(ErrorKind.INFRASTRUCTURE, "no prompt", 2)), out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "KTAP version 1" and lines[2] == "1..7"
    results = [x for x in lines if x.startswith(("ok ", "not ok "))]
    assert results[0] == "ok 1 android-boot # XFAIL stops at known: known is broken"
    assert "ok 3 known # XFAIL link-error/confirmed: uses msleep" in results
    assert "not ok 5 new" in results and results[-1] == "not ok 7 bootverify-run"
    assert lines[-1] == "Bail out! infrastructure: no prompt"
    for run in (record(tmp_path), record(tmp_path, error=RunError(ErrorKind.INFRASTRUCTURE,
                                                                  "no prompt", 2))):
        kcidb_io.schema.V4_3.validate(kcidb_json(run))     # KernelCI's own validator
    doc = kcidb_json(record(tmp_path))
    assert doc["version"] == {"major": 4, "minor": 3}
    assert all(t["id"].startswith("bootverify:") and t["build_id"] == doc["builds"][0]["id"]
               for t in doc["tests"])
    assert {t["path"]: t["status"] for t in doc["tests"]}["bootverify.modules.new"] == "FAIL"


# --- the command line ---

def bootverify(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bootverify", *argv], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_version_and_help_of_every_command():
    r = bootverify("--version")
    assert r.returncode == 0 and r.stdout.startswith("bootverify 0.")
    for command in (["check"], ["run"], ["kmi-diff"], ["inspect"], ["unpack"], ["images"],
                    ["images", "build"]):
        r = bootverify(*command, "--help")
        assert r.returncode == 0
        usage, _, rest = r.stdout.partition("\n\n")
        description = rest.partition("\n\n")[0]
        assert len(description.split()) >= 10, (command, r.stdout)   # says what it does
    assert "removed" in bootverify("kmi-diff", "--help").stdout


@pytest.mark.parametrize("option,value", [("--module-timeout", "0"),
                                          ("--module-timeout", "-1"),
                                          ("--module-timeout", "nan"),
                                          ("--boot-timeout", "inf"), ("--memory", "1"),
                                          ("--infra-retries", "-1")])
def test_numeric_options_are_validated(tmp_path, option, value):
    r = bootverify("run", "--boot", "b", "--vendor-boot", "v", "--symvers", "s", option, value,
                   cwd=tmp_path)
    assert r.returncode == 2 and f"argument {option}:" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_output_paths_are_checked_before_anything_runs(tmp_path):
    (tmp_path / "file").write_text("")
    base = ["run", "--boot", "missing.img", "--vendor-boot", "v", "--symvers", "s"]
    r = bootverify(*base, "--output", str(tmp_path / "file" / "out"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr == f"bootverify: {tmp_path / 'file'}: cannot " \
                                             f"write: Not a directory\n"
    r = bootverify(*base, "--junit", str(tmp_path / "nodir" / "j.xml"), cwd=tmp_path)
    assert r.returncode == 2 and "nodir: cannot write: No such file" in r.stderr
    # the paths are fine, the input is not: nothing is left behind, no output directory
    r = bootverify(*base, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
