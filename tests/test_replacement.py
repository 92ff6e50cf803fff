"""`bootverify replacement` on the sample builds: the GKI output directory and its
`replacement/` (a device-built kernel with a changed struct crypto_alg, untrimmed) as the two
dist directories. md5.ko (a GKI module) must fail on crypto_register_shash and the report must
tie that to the symbol's CRC change; the device modules' latent KMI violations show; the exit
status says whether every module would load; the boot's verdicts agree with the static ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from packing import run_bootverify

from bootverify import cli
from bootverify.readers.symbols import read_kmi_symbol_lists

pytestmark = pytest.mark.images

RUN_TIMEOUT = 400


def replacement(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["replacement", *map(str, argv)])
    return rc, out.getvalue(), err.getvalue()


def by_name(doc: dict) -> dict[str, dict]:
    return {m["name"]: m for m in doc["modules"]}


@pytest.mark.timeout(900)       # a cold sample build comes first
def test_static_report_ties_md5_to_the_crc_change(sample_images: Path, tmp_path: Path) -> None:
    rc, out, err = replacement("--gki-dist", sample_images, "--dist",
                               sample_images / "replacement", "--static-only",
                               "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml")
    assert rc == 1, err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert list(doc)[:2] == ["replacement", "kmi"]
    assert doc["replacement"]["verdict"] == "fails"
    # the dist reader found the KMI list by its Kleaf name, and the GKI modules
    assert doc["replacement"]["inputs"]["gki"]["kmi_symbol_lists"] == [
        str(sample_images / "abi_symbollist")]
    changed = {c["symbol"]: c for c in doc["kmi"]["changes"]}
    assert {"crypto_register_shash", "crypto_unregister_shash", "crypto_alloc_shash",
            "crypto_destroy_tfm"} == set(changed)
    kmi = read_kmi_symbol_lists([sample_images / "kmi_symbol_list"])
    assert doc["kmi"]["counts"]["crc-changed"] == 4
    assert doc["kmi"]["symbols_compared"] == len(kmi)
    modules = by_name(doc)
    md5 = modules["md5"]
    assert md5["origin"] == "gki" and md5["static"]["verdict"] == "fail"
    assert [(c["symbol"], c["change"]) for c in md5["kmi_changes"]] == [
        ("crypto_register_shash", "crc-changed"), ("crypto_unregister_shash", "crc-changed")]
    assert md5["kmi_changes"][0] == changed["crypto_register_shash"]
    # every GKI module and every device module has its verdict
    expected = json.loads((sample_images / "replacement/expected.json").read_text())["modules"]
    assert set(modules) == set(expected)
    assert {n for n, m in modules.items() if m["origin"] == "gki"} == {
        n for n, e in expected.items() if e["partition"] == "system_dlkm"}
    assert {n: sorted({p["kind"] for p in m["static"]["problems"]})
            for n, m in modules.items()} == {n: e["static"] for n, e in expected.items()}
    # a device module's latent KMI violation: it loads on this untrimmed kernel
    backlight = modules["vendor_backlight"]
    assert backlight["static"]["verdict"] == "warn" and backlight["kmi_changes"] == []
    assert "vendor_backlight" not in doc["replacement"]["failing"]
    # the text: the KMI difference first, the explanation under the module, the verdict last
    n = len(read_kmi_symbol_lists([sample_images / "kmi_symbol_list"]))
    assert out.startswith(f"KMI: 4 of {n} KMI symbols removed or changed, 0 added")
    assert ("  md5 (GKI module): crc-mismatch: crypto_register_shash, crypto_unregister_shash\n"
            "    crypto_register_shash: that KMI symbol changed CRC in your kernel (GKI ") in out
    assert out.splitlines()[-1].startswith("REPLACEMENT: FAILS: 1 GKI and ")
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "r.xml").getroot().iter("testcase")}
    assert set(cases) == set(modules)
    assert "changed CRC in your kernel" in cases["md5"].find("failure").get("message")
    assert cases["crc16"].find("failure") is None


@pytest.mark.timeout(900)
def test_exit_0_only_when_every_module_loads(sample_images: Path, tmp_path: Path) -> None:
    """Explicit inputs, no dist (the GKI modules as --system-dlkm): the GKI modules that do not
    use struct crypto_alg all load on the replacement; with md5 among them, not."""
    gki = tmp_path / "system_dlkm"
    gki.mkdir()
    for name in ("crc16.ko", "crc7.ko"):
        shutil.copy(sample_images / "system_dlkm" / name, gki)
    (gki / "modules.load").write_text("crc16.ko\ncrc7.ko\n")
    (gki / "modules.dep").write_text("crc16.ko:\ncrc7.ko:\n")
    args = ["--gki-symvers", sample_images / "vmlinux.symvers", "--kmi-symbol-list",
            sample_images / "kmi_symbol_list", "--system-dlkm", gki,
            "--boot", sample_images / "replacement/boot.img",
            "--symvers", sample_images / "replacement/vmlinux.symvers", "--static-only"]
    rc, out, _ = replacement(*args)
    assert rc == 0 and out.splitlines()[-1].startswith("REPLACEMENT: LOADS")
    shutil.copy(sample_images / "system_dlkm/md5.ko", gki)
    (gki / "modules.load").write_text("crc16.ko\ncrc7.ko\nmd5.ko\n")
    (gki / "modules.dep").write_text("crc16.ko:\ncrc7.ko:\nmd5.ko:\n")
    rc, out, _ = replacement(*args)
    assert rc == 1 and "md5 (GKI module)" in out
    # an option overrides the dist's file: the GKI kernel's own symvers as "yours" changes
    # nothing, so md5 loads and only the device modules' seeded faults remain
    rc, out, _ = replacement("--gki-dist", sample_images, "--dist", sample_images / "replacement",
                             "--symvers", sample_images / "vmlinux.symvers", "--static-only",
                             "--json", "-")
    doc = json.loads(out)
    assert doc["kmi"]["changes"] == [] and "md5" not in doc["replacement"]["failing"]


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    rc, out, err = replacement("--dist", tmp_path, "--static-only")
    assert rc == 2 and out == ""
    assert err == ("bootverify: (command line): no symvers of the GKI kernel: give "
                   "--gki-symvers FILE, or --gki-dist DIR that has it\n")
    rc, _, err = replacement("--gki-dist", tmp_path / "nowhere", "--static-only")
    assert rc == 2 and err.startswith(f"bootverify: {tmp_path / 'nowhere'}: not a directory")


@pytest.mark.qemu
@pytest.mark.timeout(RUN_TIMEOUT + 600)
def test_booted_report_confirms_md5_and_explains_it(sample_images: Path, tmp_path: Path) -> None:
    """The whole report through the CLI as a user runs it: the replacement booted with the GKI
    modules as system_dlkm; md5's link error is confirmed and explained by the CRC change."""
    rc, stdout, stderr = run_bootverify([
        "replacement", "--gki-dist", sample_images, "--dist", sample_images / "replacement",
        "--module-timeout", "8", "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml",
        "--console-log", tmp_path / "console.log"], RUN_TIMEOUT)
    assert rc == 1, stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    modules = by_name(doc)
    expected = json.loads((sample_images / "replacement/expected.json").read_text())["modules"]
    assert {n: m["runtime"]["outcome"] for n, m in modules.items()} == {
        n: e["runtime"] for n, e in expected.items()}
    assert not [n for n, m in modules.items() if m["agreement"] in ("missed", "unconfirmed")]
    md5 = modules["md5"]
    assert md5["runtime"]["outcome"] == "link-error" and md5["agreement"] == "confirmed"
    assert {p["symbol"] for p in md5["runtime"]["problems"]} == {
        "crypto_register_shash", "crypto_unregister_shash"}
    assert {c["symbol"] for c in md5["kmi_changes"]} == {"crypto_register_shash",
                                                         "crypto_unregister_shash"}
    # the run's conventions: the device verdict, the failing modules, the JUnit testcases
    assert doc["android"]["verdict"] == "stops"
    assert set(doc["replacement"]["failing"]) == {
        n for n, e in expected.items() if e["runtime"] not in ("loaded", "skipped")}
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "r.xml").getroot().iter("testcase")}
    assert set(cases) == set(modules) | {"android-boot"}
    assert "crypto_register_shash: that KMI symbol changed CRC in your kernel" in \
        cases["md5"].find("failure").get("message")
    assert "    crypto_register_shash: that KMI symbol changed CRC in your kernel" in stdout
    assert "md5 (GKI module): link-error (EINVAL)" in stdout
