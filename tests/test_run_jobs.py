"""`run --jobs N` and `run --shard I/N` + `merge` give the outcomes of one guest loading the
whole plan: the sample images (hang, oops, panic included) and a set of Debian's modules with
nls tables that ask for another table by request_module right after a cut, cut by the loads
and by the seconds of a previous run (--baseline). `plan --json` prints the split the shards
ran; the merged JUnit has the one run's testcases."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from packing import closure, pack_debian_images, run_bootverify
from test_run_debian import LOAD

import debian_kernels
from bootverify.readers.modules import module_name

pytestmark = [pytest.mark.qemu]

MODULE_TIMEOUT = "8"
RUN_TIMEOUT = 400


def sample_args(images: Path) -> list[str | Path]:
    return ["--boot", images / "boot.img", "--vendor-kernel-boot",
            images / "vendor_kernel_boot.img", "--system-dlkm", images / "system_dlkm"]


def run(inputs: list[str | Path], symvers: list[str | Path], out: Path,
        *extra: str) -> tuple[int, dict]:
    out.mkdir(parents=True, exist_ok=True)
    rc, _, stderr = run_bootverify(["run", *inputs, *symvers, "--module-timeout", MODULE_TIMEOUT,
                                    "--json", out / "report.json", "--junit", out / "junit.xml",
                                    "--console-log", out / "console.log", *extra], RUN_TIMEOUT)
    assert rc in (0, 1), stderr
    return rc, json.loads((out / "report.json").read_text())


def outcomes(doc: dict) -> list[tuple]:
    """What must not depend on how the plan was cut: per module in order, its outcome, errno,
    problems and agreement; the device verdict."""
    return [(m["runtime"]["origin"], m["name"], m["runtime"]["outcome"], m["runtime"]["errno"],
             [(p["kind"], p["symbol"]) for p in m["runtime"]["problems"]], m["agreement"])
            for m in doc["modules"]] + [
        tuple(doc["android"][k] for k in ("verdict", "stage", "stops_at", "failures"))]


def junit_cases(junit: Path) -> list[tuple]:
    """Per testcase: name, classname, and its child's tag, type and message."""
    return [(c.get("name"), c.get("classname"),
             [(x.tag, x.get("type"), x.get("message")) for x in c])
            for c in ET.parse(junit).getroot().iter("testcase")]


def cut_before(plan_doc: dict) -> list[str]:
    """The load-list entry each shard but the first starts with (where the plan was cut)."""
    entries = plan_doc["verdict_facts"]["entries"]
    return [entries[min(s["entries"])]["name"] for s in plan_doc["shards"][1:] if s["entries"]]


def shards_merged(inputs: list[str | Path], symvers: list[str | Path], out: Path,
                  count: int) -> tuple[int, str, dict, dict]:
    """`plan --shards N --json`, each shard run one after another (each reporting what the plan
    gave it), then `merge --json --junit`: (exit status, stdout, the plan, the merged report)."""
    rc, stdout, stderr = run_bootverify(["plan", *inputs, *symvers, "--shards", str(count),
                                         "--json", "-"], 60)
    assert rc == 0, stderr
    plan_doc = json.loads(stdout)
    reports = []
    for i in range(1, count + 1):
        _, doc = run(inputs, symvers, out / f"shard{i}", "--shard", f"{i}/{count}",
                     "--jobs", "1")
        assert sorted(f"{m['runtime']['origin']}/{m['name']}" for m in doc["modules"]) == \
            plan_doc["shards"][i - 1]["modules"]
        reports.append(out / f"shard{i}" / "report.json")
    rc, stdout, stderr = run_bootverify(["merge", *reversed(reports), "--json",
                                         out / "merged.json", "--junit", out / "merged.xml"], 60)
    assert rc in (0, 1), stderr
    return rc, stdout, plan_doc, json.loads((out / "merged.json").read_text())


@pytest.mark.images
@pytest.mark.timeout(4 * RUN_TIMEOUT)
def test_jobs_and_shards_give_the_outcomes_of_one_guest(sample_images: Path, tmp_path: Path):
    symvers = ["--symvers", sample_images / "vmlinux.symvers",
               "--kmi-symbol-list", sample_images / "kmi_symbol_list"]
    inputs = sample_args(sample_images)
    rc1, one = run(inputs, symvers, tmp_path / "jobs1", "--jobs", "1")
    rc3, three = run(inputs, symvers, tmp_path / "jobs3", "--jobs", "3")
    assert rc1 == rc3 == 1 and outcomes(three) == outcomes(one)
    assert one["android"]["stops_at"] is not None

    # the split a scheduler reads, then the shards one after another, then merged
    rc, stdout, _, merged = shards_merged(inputs, symvers, tmp_path, 4)
    assert rc == rc1 and outcomes(merged) == outcomes(one)
    assert stdout.startswith("ANDROID: STOPS in first-stage at " + one["android"]["stops_at"])
    assert junit_cases(tmp_path / "merged.xml") == junit_cases(tmp_path / "jobs1" / "junit.xml")
    assert merged["summary"] == one["summary"]
    reports = [tmp_path / f"shard{i}" / "report.json" for i in range(1, 5)]

    # a shard that ran other inputs, a shard given twice: one line, exit 2
    other = json.loads(reports[1].read_text())
    other["meta"]["inputs"] = [i | {"sha256": "0" * 64} if i["role"] == "boot" else i
                               for i in other["meta"]["inputs"]]
    (tmp_path / "other.json").write_text(json.dumps(other))
    for bad in ([reports[0], tmp_path / "other.json", *reports[2:]], [*reports, reports[3]]):
        rc, stdout, stderr = run_bootverify(["merge", *bad], 60)
        assert rc == 2 and stderr.count("\n") == 1 and stderr.startswith("bootverify: "), stderr


# LOAD with four nls tables: nls_euc_jp's init calls load_nls("cp932"), nls_koi8_ru's
# load_nls("koi8-u"), a request_module of the table modules.order lists just before each (no
# modules.dep dependency; a guest has no modprobe to answer it). Placed so that the 2-way split
# cuts right before nls_koi8_ru and the 4-way one right before nls_euc_jp (asserted): their
# tables come only from the warm-up of the part after the cut (plan/shards.py).
NLS_LOAD = (*LOAD[:17], "nls_cp932", "nls_euc_jp", *LOAD[17:19], "nls_koi8_u", "nls_koi8_ru",
            *LOAD[19:])


@pytest.mark.debian
@pytest.mark.timeout(8 * RUN_TIMEOUT)
def test_jobs_and_shards_on_debian_modules(tmp_path: Path):
    if not shutil.which("depmod"):
        pytest.skip("kmod's depmod is not installed")
    root = debian_kernels.image_root(debian_kernels.NEWEST)
    release = debian_kernels.release(debian_kernels.NEWEST)
    index = {module_name(p): p for p in (root / "lib/modules" / release).rglob("*.ko")}
    assert set(NLS_LOAD) <= set(closure(index, NLS_LOAD))
    boot_img, vendor_img = pack_debian_images(tmp_path / "img", kernel_root=root,
                                              release=release, load=NLS_LOAD)
    inputs: list[str | Path] = ["--boot", boot_img, "--vendor-boot", vendor_img]
    symvers: list[str | Path] = ["--symvers", debian_kernels.module_symvers(debian_kernels.NEWEST)]
    rc, stdout, stderr = run_bootverify(["plan", *inputs, *symvers, "--shards", "2", "--json",
                                         "-"], 60)
    assert rc == 0 and cut_before(json.loads(stdout)) == ["nls_koi8_ru"], stderr
    rc1, one = run(inputs, symvers, tmp_path / "jobs1", "--jobs", "1")
    loaded = {m["name"] for m in one["modules"] if m["runtime"]["outcome"] == "loaded"}
    assert {"nls_euc_jp", "nls_koi8_ru"} <= loaded and len(one["modules"]) >= len(NLS_LOAD)
    _, two = run(inputs, symvers, tmp_path / "jobs2", "--jobs", "2")
    assert len(two["meta"]["boots"]) >= 2 and outcomes(two) == outcomes(one)
    # cut by the seconds of the first run (--baseline: last night's report)
    _, timed = run(inputs, symvers, tmp_path / "timed", "--jobs", "2",
                   "--baseline", tmp_path / "jobs1" / "report.json")
    assert len(timed["meta"]["boots"]) >= 2 and outcomes(timed) == outcomes(one)
    assert any("cut by the seconds of" in n for n in timed["notes"]), timed["notes"]
    rc, _, plan4, merged = shards_merged(inputs, symvers, tmp_path, 4)
    assert "nls_euc_jp" in cut_before(plan4)
    assert rc == rc1 and outcomes(merged) == outcomes(one)
    assert junit_cases(tmp_path / "merged.xml") == junit_cases(tmp_path / "jobs1" / "junit.xml")
