"""KCIDB JSON (KernelCI's common report database, I/O schema v4.3, as kcidb-io validates it):
one checkout and one build standing for the images under test (ids from boot.img's sha256, so
that nights of the same build join), and one test a module (path `bootverify.ORIGIN.MODULE`)
after the device verdict (`bootverify.android_boot`). Status: PASS, FAIL, SKIP (not given to
the kernel on purpose), ERROR (the run itself failed: `bootverify.run`). Every object's id
starts with the origin `bootverify:`, as KCIDB requires."""

from __future__ import annotations

from typing import Any

from bootverify.crosscheck import module_fails
from bootverify.nightly.meta import iso
from bootverify.reports.model import RunRecord
from bootverify.runtime.kmsg import Outcome
from bootverify.verdict import Boots

ORIGIN = "bootverify"
KCIDB_VERSION = {"major": 4, "minor": 3}


def kcidb_json(run: RunRecord) -> dict[str, Any]:
    hashes = dict(run.input_hashes())
    build_key = hashes.get("boot", "unknown")[:16]
    run_key = f"{build_key}:{run.started.strftime('%Y%m%dT%H%M%SZ')}"
    checkout_id, build_id = f"{ORIGIN}:{build_key}", f"{ORIGIN}:{build_key}"
    start = iso(run.started)
    environment = {"comment": f"qemu-system-aarch64 ({run.meta.get('qemu', {}).get('version')},"
                              f" {run.meta.get('qemu', {}).get('accel')}) on {run.hostname}"}

    def test(key: str, path: str, status: str, seconds: float, comment: str,
             excerpt: str = "", misc: dict[str, Any] | None = None) -> dict[str, Any]:
        t: dict[str, Any] = {"id": f"{ORIGIN}:{run_key}:{key}", "build_id": build_id,
                             "origin": ORIGIN, "path": path, "status": status,
                             "start_time": start, "duration": round(seconds, 3),
                             "environment": environment, "comment": comment[:1000]}
        if excerpt:
            t["log_excerpt"] = excerpt[-16384:]
        if misc:
            t["misc"] = misc
        return t

    tests = [test("android-boot", "bootverify.android_boot",
                  "FAIL" if run.device.verdict is Boots.STOPS else "PASS", 0.0,
                  run.device.reason, "\n".join(run.device.failures))]
    for v in run.verdicts:
        skipped = v.runtime.outcome in (Outcome.SKIPPED, Outcome.UNLISTED)
        failing = module_fails(v)
        status = "FAIL" if failing else "SKIP" if skipped else "PASS"
        tests.append(test(v.name, f"{ORIGIN}.{v.runtime.origin or 'modules'}.{v.name}", status,
                          v.runtime.seconds, v.why or v.runtime.modprobe_message,
                          "\n".join(v.runtime.kmsg),
                          {"outcome": v.runtime.outcome.value, "agreement": v.agreement.value,
                           "errno": v.runtime.errno_name}))
    if run.error is not None:
        tests.append(test("run", f"{ORIGIN}.run", "ERROR", run.seconds, run.error.message))
    return {"version": KCIDB_VERSION,
            "checkouts": [{"id": checkout_id, "origin": ORIGIN,
                           "comment": f"images of {run.name}"}],
            "builds": [{"id": build_id, "checkout_id": checkout_id, "origin": ORIGIN,
                        "architecture": "arm64", "start_time": start,
                        "comment": f"kernel {run.release}",
                        "misc": {"sha256": hashes}}],
            "tests": tests}
