"""JUnit XML, valid against both schemas CI systems check it with (tests/data/junit-xsd/): the
Jenkins xunit plugin's junit-10.xsd and Ant's JUnit.xsd. What that takes: a `testsuite` root
with name, tests, failures, errors, skipped, time (the whole run), timestamp (no zone, UTC),
hostname; then `properties`, the testcases, `system-out` and `system-err` in that order; at most
one child per testcase (Ant); and only characters XML 1.0 allows (kernel logs have others).

Testcases: `android-boot` (the device verdict), one per module (classname
bootverify.ORIGIN), and on an infrastructure failure or an interrupt `bootverify-run` with an
`<error>`. A failure is a module that fails (crosscheck.fails) or a device that stops; with
--expect, an expected failure is `<skipped>` (it does not fail the job: a regression does) and
a regression is a failure whose message says so. Properties: the kernel release, the boot mode,
the Android verdict, tool and qemu versions, every input's sha256, and with --expect /
--baseline their lists of names."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TextIO

from bootverify.crosscheck import ModuleVerdict, module_fails
from bootverify.nightly.baseline import Change
from bootverify.nightly.expect import DEVICE, Judged, Status
from bootverify.reports.model import RunRecord
from bootverify.runtime.kmsg import Outcome
from bootverify.verdict import Boots

RUN_CASE = "bootverify-run"
# XML 1.0's Char production, less what is allowed: C0 controls but tab, LF, CR; surrogates;
# U+FFFE, U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _properties(run: RunRecord) -> list[tuple[str, str]]:
    meta = run.meta
    props = [("kernel_release", run.release), ("boot_mode", run.boot_mode or ""),
             ("android.verdict", run.device.verdict.value),
             ("android.stage", run.device.stage or ""),
             ("android.stops_at", run.device.stops_at or ""),
             ("android.reason", run.device.reason),
             ("bootverify.version", str(meta.get("tool_version", ""))),
             ("bootverify.schema_version", str(meta.get("schema_version", ""))),
             ("qemu.version", str(meta.get("qemu", {}).get("version", ""))),
             ("qemu.accel", str(meta.get("qemu", {}).get("accel", "")))]
    props += [(f"sha256.{role}", digest) for role, digest in run.input_hashes()]
    if run.judgement is not None:
        props.append(("expect.file", run.judgement.path))
        for status in (Status.REGRESSION, Status.FIXED, Status.EXPECTED):
            props.append((f"expect.{status.value}",
                          " ".join(j.name for j in run.judgement.with_status(status))))
        props.append(("expect.stale", " ".join(run.judgement.stale)))
    if run.comparison is not None:
        props.append(("baseline.file", run.comparison.path))
        props += [(f"baseline.{c.value}", " ".join(m.name for m in run.comparison.of(c)))
                  for c in Change]
    if run.error is not None:
        props.append(("error", f"{run.error.kind.value}: {run.error.message}"))
    return props


def _module_child(case: ET.Element, v: ModuleVerdict, judged: Judged | None) -> str:
    """The testcase's one child, if any; returns what it counts as (failure, skipped, "")."""
    failing = module_fails(v)
    if judged is not None and judged.status is Status.EXPECTED:
        ET.SubElement(case, "skipped", message=xml_text(f"expected failure: {judged.why}"))
        return "skipped"
    if v.runtime.outcome in (Outcome.SKIPPED, Outcome.UNLISTED) and not failing:
        ET.SubElement(case, "skipped", message=xml_text(v.why))
        return "skipped"
    if failing or (judged is not None and judged.status is Status.REGRESSION):
        message = v.why or v.runtime.modprobe_message
        if judged is not None and judged.status is Status.REGRESSION:
            message = f"regression: {judged.why}; {message}"
        failure = ET.SubElement(case, "failure", type=f"{v.runtime.outcome.value}/"
                                                      f"{v.agreement.value}",
                                message=xml_text(message))
        failure.text = xml_text("\n".join(v.runtime.kmsg))
        return "failure"
    return ""


def write_junit(run: RunRecord, out: TextIO) -> None:
    suite = ET.Element("testsuite", name=run.name)
    props = ET.SubElement(suite, "properties")
    for name, value in _properties(run):
        ET.SubElement(props, "property", name=name, value=xml_text(value))
    judged = {j.name: j for j in run.judgement.all()} if run.judgement else {}
    counts = {"failure": 0, "skipped": 0, "": 0}
    boots = sum(b.get("seconds", 0.0) for b in run.meta.get("boots", ()))
    case = ET.SubElement(suite, "testcase", name=DEVICE, classname="bootverify.android",
                         time=f"{boots:.3f}")
    device_judged = judged.get(DEVICE)
    if device_judged is not None and device_judged.status is Status.EXPECTED:
        ET.SubElement(case, "skipped", message=xml_text(f"expected: {device_judged.why}"))
        counts["skipped"] += 1
    elif run.device.verdict is Boots.STOPS:
        regression = "regression: " if device_judged is not None else ""
        ET.SubElement(case, "failure", type=f"stops/{run.device.stage}",
                      message=xml_text(regression + run.device.reason)).text = \
            xml_text("\n".join(run.device.failures))
        counts["failure"] += 1
    for v in run.verdicts:
        case = ET.SubElement(suite, "testcase", name=v.name, time=f"{v.runtime.seconds:.3f}",
                             classname=f"bootverify.{v.runtime.origin or 'modules'}")
        counts[_module_child(case, v, judged.get(v.name))] += 1
    errors = 0
    if run.error is not None:
        case = ET.SubElement(suite, "testcase", name=RUN_CASE,
                             classname="bootverify.infrastructure", time=f"{run.seconds:.3f}")
        ET.SubElement(case, "error", type=run.error.kind.value,
                      message=xml_text(run.error.message)).text = xml_text(
            f"the run ended early: {len(run.verdicts)} module(s) have an outcome")
        errors = 1
    # Ant's schema allows no system-out in a testcase: every finding is listed in the suite's.
    findings = [f"finding {v.name}: {f.kind}: {f.line}" for v in run.verdicts
                for f in v.runtime.findings]
    ET.SubElement(suite, "system-out").text = xml_text(
        "\n".join([f"console log: {run.console_log}", *findings]))
    ET.SubElement(suite, "system-err")
    suite.attrib.update(tests=str(len(run.verdicts) + 1 + errors),
                        failures=str(counts["failure"]), errors=str(errors),
                        skipped=str(counts["skipped"]), time=f"{run.seconds:.3f}",
                        timestamp=run.started.strftime("%Y-%m-%dT%H:%M:%S"),
                        hostname=run.hostname)
    ET.indent(suite)
    out.write(ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n")
