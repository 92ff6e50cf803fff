"""dlkm partitions as builds hand them over (bootverify/readers/partition.py): the S23's real
ext4 system_dlkm.img, an erofs image and a staging archive made from the same files with
erofs-utils' mkfs.erofs and tarfile, ext4 images made with e2fsprogs' mke2fs -d, and bad ones.
Each is read on the host by the maintained tools, nothing mounted, nothing left behind."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from bootverify.errors import InputError
from bootverify.readers import partition
from bootverify.readers.partition import Format, PartitionTree, open_partition

S23 = Path(__file__).parent / "data" / "samsung-s23-5.15"
RELEASE = "5.15.78-android13-8-ab"
S23_FILES = {"kernel/mm/zsmalloc.ko", "kernel/drivers/block/zram/zram.ko"}


@pytest.fixture(autouse=True)
def own_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Extractions go under the test's own directory, so that leftovers can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _leftovers(tmp: Path) -> list[Path]:
    return list(tmp.iterdir())


def _snapshot(tree: PartitionTree) -> dict[str, bytes]:
    return {str(p.relative_to(tree.modules_dir)): p.read_bytes()
            for p in sorted(tree.modules_dir.rglob("*")) if p.is_file()}


def _run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def s23_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The S23 system_dlkm's files (by debugfs, the reference tool itself)."""
    out = tmp_path_factory.mktemp("s23-system-dlkm")
    _run("debugfs", "-R", f"rdump / {out}", S23 / "system_dlkm.img")
    return out


def test_the_s23_ext4_image_as_the_device_sees_it(own_tempdir: Path) -> None:
    with open_partition(S23 / "system_dlkm.img") as tree:
        assert tree.format is Format.EXT4
        assert tree.device_dir == f"lib/modules/{RELEASE}"
        files = _snapshot(tree)
        assert {f for f in files if f.endswith(".ko")} == S23_FILES
        # Its own modules.load is the build's dist list; modules.dep names paths inside it.
        assert files["modules.load"] == (S23 / "system_dlkm.modules.load").read_bytes()
        assert b"kernel/drivers/block/zram/zram.ko: kernel/mm/zsmalloc.ko" in files["modules.dep"]
        zram = tree.modules_dir / "kernel/drivers/block/zram/zram.ko"
        assert tree.label(zram) == \
            f"{S23 / 'system_dlkm.img'}:lib/modules/{RELEASE}/kernel/drivers/block/zram/zram.ko"
        assert files[next(f for f in files if f.endswith("zram.ko"))][:4] == b"\x7fELF"
    assert not tree.root.exists() and _leftovers(own_tempdir) == []


def test_erofs_and_a_staging_archive_of_the_same_files_read_the_same(
        s23_tree: Path, tmp_path: Path) -> None:
    with open_partition(S23 / "system_dlkm.img") as tree:
        expected = _snapshot(tree)
    erofs = tmp_path / "system_dlkm.erofs.img"
    _run("mkfs.erofs", erofs, s23_tree)
    archive = tmp_path / "system_dlkm_staging_archive.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(s23_tree, arcname=".")
    for path, fmt in ((erofs, Format.EROFS), (archive, Format.STAGING_ARCHIVE)):
        with open_partition(path) as tree:
            assert tree.format is fmt
            assert tree.device_dir == f"lib/modules/{RELEASE}"
            assert _snapshot(tree) == expected


def test_staging_archive_without_tarfile_filters(s23_tree: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Bookworm's own Python (3.11.2) has no extraction filters: the archive reads the same,
    and the members are vetted all the same."""
    monkeypatch.setattr(partition, "TAR_FILTERS", False)
    archive = tmp_path / "system_dlkm_staging_archive.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(s23_tree, arcname=".")
    with open_partition(S23 / "system_dlkm.img") as tree:
        expected = _snapshot(tree)
    with open_partition(archive) as tree:
        assert _snapshot(tree) == expected
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        tar.addfile(tarfile.TarInfo("lib/../../escape.ko"))
    with pytest.raises(InputError, match="lies outside the archive"), open_partition(evil):
        pass
    assert not (tmp_path.parent / "escape.ko").exists()


def test_mke2fs_images_flat_and_by_release(tmp_path: Path) -> None:
    src = tmp_path / "src"
    flat = src / "lib/modules"
    flat.mkdir(parents=True)
    (flat / "a.ko").write_bytes(b"\x7fELF")
    (flat / "modules.load").write_text("a.ko\n")
    image = tmp_path / "flat.img"
    _run("mke2fs", "-q", "-F", "-t", "ext4", "-d", src, image, "1M")
    with open_partition(image) as tree:
        assert tree.device_dir == "lib/modules" and set(_snapshot(tree)) == {"a.ko",
                                                                            "modules.load"}
    shutil.rmtree(src)
    for release in ("6.1.1", "6.1.2"):
        d = src / "lib/modules" / release
        d.mkdir(parents=True)
        (d / "modules.load").write_text("")
    image = tmp_path / "two.img"
    _run("mke2fs", "-q", "-F", "-t", "ext4", "-d", src, image, "1M")
    with open_partition(image, "6.1.2") as tree:
        assert tree.device_dir == "lib/modules/6.1.2"
    with pytest.raises(InputError, match=r"several release directories \(6.1.1, 6.1.2\) and "
                                         r"none is the kernel's \(6.1.9\)"), \
            open_partition(image, "6.1.9"):
        pass


def test_a_directory_is_taken_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "x.ko").write_bytes(b"")
    with open_partition(tmp_path) as tree:
        assert tree.format is Format.DIRECTORY and tree.modules_dir == tmp_path / ""
        assert tree.label(tmp_path / "x.ko") == str(tmp_path / "x.ko")
    assert tmp_path.is_dir()                    # the user's directory is never removed
    (tmp_path / "root" / "lib/modules/6.1").mkdir(parents=True)
    with open_partition(tmp_path / "root") as tree:
        assert tree.device_dir == "lib/modules/6.1"


def test_bad_partitions_are_one_line_errors_and_leave_nothing(
        s23_tree: Path, tmp_path: Path, own_tempdir: Path) -> None:
    real = (S23 / "system_dlkm.img").read_bytes()
    erofs = tmp_path / "good.erofs"
    _run("mkfs.erofs", erofs, s23_tree)
    bad_tar = tmp_path / "evil.tar.gz"
    with tarfile.open(bad_tar, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.ko")
        tar.addfile(info)
    link_tar = tmp_path / "link.tar.gz"
    with tarfile.open(link_tar, "w:gz") as tar:
        info = tarfile.TarInfo("lib/modules/passwd.ko")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    file_src = tmp_path / "file-src"
    (file_src / "lib").mkdir(parents=True)
    (file_src / "lib/modules").write_text("a file where a directory should be\n")
    file_img = tmp_path / "file.img"
    _run("mke2fs", "-q", "-F", "-t", "ext4", "-d", file_src, file_img, "1M")
    cases = {
        "truncated.img": (real[:200_000], "truncated ext4 image: its superblock says 450560 "
                                          "bytes, the file has 200000"),
        "zeros.img": (bytes(8192), "not a directory, an ext4 or erofs partition image or a "
                                   "staging archive"),
        "tiny.img": (b"ANDROID!", "8 bytes, too short for a superblock"),
        "truncated.erofs": (erofs.read_bytes()[:6000], "truncated erofs image"),
        "broken.tar.gz": (b"\x1f\x8b\x08\x00" + bytes(40), "not a readable staging archive"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=message) as e, open_partition(tmp_path / name):
            pass
        assert e.value.path == str(tmp_path / name) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="not a readable staging archive"), \
            open_partition(bad_tar):
        pass
    with pytest.raises(InputError, match="not a readable staging archive"), \
            open_partition(link_tar):
        pass
    with pytest.raises(InputError, match="lib/modules: not a directory"), \
            open_partition(file_img):
        pass
    with pytest.raises(InputError, match="No such file"), open_partition(tmp_path / "none"):
        pass
    assert _leftovers(own_tempdir) == []


def test_links_out_of_an_image_and_loops_are_refused(tmp_path: Path, own_tempdir: Path) -> None:
    for name, target, message in (("out", "/etc/passwd", "a symbolic link out of the partition"),
                                  ("loop", "x.ko", "a symbolic link loop")):
        src = tmp_path / name
        (src / "lib/modules").mkdir(parents=True)
        (src / "lib/modules/x.ko").symlink_to(target)
        image = tmp_path / f"{name}.img"
        _run("mke2fs", "-q", "-F", "-t", "ext4", "-d", src, image, "1M")
        with pytest.raises(InputError, match=message), open_partition(image):
            pass
    assert _leftovers(own_tempdir) == []
