"""`run --jobs N` and `run --shard I/N` + `merge` give the outcomes of one guest loading the
whole plan: the sample images (hang, oops, panic included) and a set of Debian's modules.
`plan --json` prints the split the shards ran."""

from __future__ import annotations

import json
import shutil
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
                                    "--json", out / "report.json",
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
    rc, stdout, stderr = run_bootverify(["plan", *inputs, *symvers, "--shards", "4", "--json",
                                         "-"], 60)
    assert rc == 0, stderr
    split = json.loads(stdout)["shards"]
    reports = []
    for i in range(1, 5):
        _, doc = run(inputs, symvers, tmp_path / f"shard{i}", "--shard", f"{i}/4", "--jobs", "1")
        assert sorted(f"{m['runtime']['origin']}/{m['name']}" for m in doc["modules"]) == \
            split[i - 1]["modules"]
        reports.append(tmp_path / f"shard{i}" / "report.json")
    rc, stdout, stderr = run_bootverify(["merge", *reversed(reports), "--json",
                                         tmp_path / "merged.json"], 60)
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert rc == rc1 and outcomes(merged) == outcomes(one), stderr
    assert stdout.startswith("ANDROID: STOPS in first-stage at " + one["android"]["stops_at"])

    # a shard that ran other inputs, a shard given twice: one line, exit 2
    other = json.loads(reports[1].read_text())
    other["meta"]["inputs"] = [i | {"sha256": "0" * 64} if i["role"] == "boot" else i
                               for i in other["meta"]["inputs"]]
    (tmp_path / "other.json").write_text(json.dumps(other))
    for bad in ([reports[0], tmp_path / "other.json", *reports[2:]], [*reports, reports[3]]):
        rc, stdout, stderr = run_bootverify(["merge", *bad], 60)
        assert rc == 2 and stderr.count("\n") == 1 and stderr.startswith("bootverify: "), stderr


@pytest.mark.debian
@pytest.mark.timeout(3 * RUN_TIMEOUT)
def test_jobs_on_debian_modules(tmp_path: Path):
    if not shutil.which("depmod"):
        pytest.skip("kmod's depmod is not installed")
    root = debian_kernels.image_root(debian_kernels.NEWEST)
    release = debian_kernels.release(debian_kernels.NEWEST)
    index = {module_name(p): p for p in (root / "lib/modules" / release).rglob("*.ko")}
    assert set(LOAD) <= set(closure(index, LOAD))
    boot_img, vendor_img = pack_debian_images(tmp_path / "img", kernel_root=root,
                                              release=release, load=LOAD)
    inputs: list[str | Path] = ["--boot", boot_img, "--vendor-boot", vendor_img]
    symvers: list[str | Path] = ["--symvers", debian_kernels.module_symvers(debian_kernels.NEWEST)]
    _, one = run(inputs, symvers, tmp_path / "jobs1", "--jobs", "1")
    _, two = run(inputs, symvers, tmp_path / "jobs2", "--jobs", "2")
    assert outcomes(two) == outcomes(one) and len(one["modules"]) >= len(LOAD)
