"""`check` follows the load plan (bootverify.static.analysis's packaging rules): a provider
that loads later or never, a hard dependency or listed module libmodprobe cannot load. Pure:
crafted plans (bootverify.plan) and module facts, as test_plan.py and test_analysis.py make
them."""

from __future__ import annotations

from pathlib import Path

from test_analysis import kernel, mod
from test_plan import plan

from bootverify.readers.modules import ModuleExport
from bootverify.static.analysis import ProblemKind, Verdict, analyze
from bootverify.verdict import Boots, device_verdict, predicted_outcomes

PACKAGING = ProblemKind.PACKAGING


def core() -> object:
    return mod("vendor_core", undefined=["printk"],
               exports=[ModuleExport("vendor_core_register", 0x77)])


def sensor() -> object:
    return mod("vendor_sensor", undefined=["printk", "vendor_core_register"],
               versions={"module_layout": 0x0c0ffee0, "printk": 0x1,
                         "vendor_core_register": 0x77})


def packaging(report, name: str) -> list[tuple[str, str, bool]]:
    p = report.prediction(name)
    assert p is not None
    return [(x.symbol, x.detail, x.fatal) for x in p.problems if x.kind is PACKAGING]


def dlkm(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_first_stage_module_whose_provider_only_vendor_dlkm_has(tmp_path):
    """Issue 9's row 5: the set is complete, but vendor_core comes only with vendor_dlkm, which
    is mounted after first stage: "Unknown symbol" on the device."""
    p = plan({"lib/modules/vendor_sensor.ko": "",
              "lib/modules/modules.dep": "vendor_sensor.ko:\n",
              "lib/modules/modules.load": "vendor_sensor.ko\n"},
             dlkm={"vendor_dlkm": dlkm(tmp_path, {"vendor_core.ko": "",
                                                  "modules.dep": "vendor_core.ko:\n",
                                                  "modules.load": "vendor_core.ko\n"})})
    report = analyze(kernel(), [sensor(), core()], p)
    assert packaging(report, "vendor_sensor") == [(
        "vendor_core_register", "vendor_sensor (first-stage) needs it from vendor_core, which "
        "only vendor_dlkm has (second-stage): move vendor_core to vendor_kernel_boot's "
        "modules.load", True)]
    assert report.prediction("vendor_core").verdict is Verdict.OK
    # Without the plan the set is complete and both load.
    assert analyze(kernel(), [sensor(), core()]).prediction("vendor_sensor").verdict \
        is Verdict.OK
    device = device_verdict(p, predicted_outcomes(p, report.modules))
    assert (device.verdict, device.stops_at) == (Boots.STOPS, "vendor_sensor")


def test_provider_later_in_the_same_list():
    """modules.dep does not name the provider, and the load list has it after its user."""
    p = plan({"lib/modules/vendor_sensor.ko": "", "lib/modules/vendor_core.ko": "",
              "lib/modules/modules.dep": "vendor_sensor.ko:\nvendor_core.ko:\n",
              "lib/modules/modules.load": "vendor_sensor.ko\nvendor_core.ko\n"})
    report = analyze(kernel(), [sensor(), core()], p)
    assert packaging(report, "vendor_sensor") == [(
        "vendor_core_register", "needs it from vendor_core, which loads after it: modules.dep "
        "does not give vendor_core as a dependency of vendor_sensor (run depmod over the whole "
        "partition)", True)]
    # With the modules.dep line depmod writes, vendor_core loads first.
    p = plan({"lib/modules/vendor_sensor.ko": "", "lib/modules/vendor_core.ko": "",
              "lib/modules/modules.dep": "vendor_sensor.ko: vendor_core.ko\nvendor_core.ko:\n",
              "lib/modules/modules.load": "vendor_sensor.ko\nvendor_core.ko\n"})
    assert analyze(kernel(), [sensor(), core()], p).prediction("vendor_sensor").problems == ()


def test_blocklisted_hard_dependency_and_unlisted_provider():
    base = {"lib/modules/vendor_sensor.ko": "", "lib/modules/vendor_core.ko": "",
            "lib/modules/modules.load": "vendor_sensor.ko\n"}
    p = plan(base | {"lib/modules/modules.dep": "vendor_sensor.ko: vendor_core.ko\n"
                                                "vendor_core.ko:\n",
                     "lib/modules/modules.blocklist": "blocklist vendor_core\n"})
    report = analyze(kernel(), [sensor(), core()], p)
    assert packaging(report, "vendor_sensor") == [(
        "vendor_core_register", "its modules.dep dependency vendor_core is blocklisted "
        "(blocklisted (modules.blocklist)): InsmodWithDeps stops there", True)]
    assert packaging(report, "vendor_core") == []       # blocklisted on purpose
    # Not a modules.dep dependency and in no load list: it never loads.
    p = plan(base | {"lib/modules/modules.dep": "vendor_sensor.ko:\nvendor_core.ko:\n"})
    report = analyze(kernel(), [sensor(), core()], p)
    assert packaging(report, "vendor_sensor") == [(
        "vendor_core_register", "needs it from vendor_core, which never loads (in no load list "
        "(/lib/modules/modules.load))", True)]
    assert packaging(report, "vendor_core") == [
        ("", "in no load list (/lib/modules/modules.load): never loaded", False)]


def test_listed_module_missing_from_modules_dep():
    p = plan({"lib/modules/vendor_core.ko": "", "lib/modules/modules.dep": "",
              "lib/modules/modules.load": "vendor_core.ko\n"})
    report = analyze(kernel(), [core()], p)
    assert packaging(report, "vendor_core") == [(
        "", "not in /lib/modules/modules.dep, though its .ko is in the image: libmodprobe does "
            "not load it", True)]
    device = device_verdict(p, predicted_outcomes(p, report.modules))
    assert (device.verdict, device.stops_at) == (Boots.STOPS, "vendor_core")


def test_modules_dep_cycle_is_a_packaging_problem():
    """Issue 15's item 19: a hand-made modules.dep with a cycle (depmod refuses to write one)."""
    p = plan({"lib/modules/vendor_sensor.ko": "", "lib/modules/vendor_core.ko": "",
              "lib/modules/modules.dep": "vendor_sensor.ko: vendor_core.ko\n"
                                         "vendor_core.ko: vendor_sensor.ko\n",
              "lib/modules/modules.load": "vendor_sensor.ko\n"})
    report = analyze(kernel(), [sensor(), core()], p)
    for name in ("vendor_sensor", "vendor_core"):
        [(symbol, detail, fatal)] = [x for x in packaging(report, name) if "cycle" in x[1]]
        assert symbol == "" and fatal
        assert detail.startswith("modules.dep cycle vendor_sensor -> vendor_core -> "
                                 "vendor_sensor: ")
