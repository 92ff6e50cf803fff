"""A dlkm partition as a build hands it over: a directory, a partition image (ext4 or erofs) or
a staging archive (*_staging_archive.tar.gz), opened as the device would see it mounted.

Nothing is mounted (no root, no loop device): images are extracted on the host by the
filesystems' own maintained tools, into a temporary directory that `open_partition` always
removes, each run with a timeout (subprocess.run kills and reaps the tool when it expires):
- ext4: e2fsprogs' `debugfs -R "rdump / DIR"` (read-only, the library e2fsck uses; it exits 0
  even when it fails, so any line on stderr past its banner is the error);
- erofs: erofs-utils' `fsck.erofs --extract=DIR`, which checks that every file decodes while
  it writes it out (dump.erofs of bookworm's erofs-utils 1.5 only inspects, it cannot extract);
- staging archive: Python's tarfile, its members vetted as the "data" filter would (no
  absolute paths, no `..`, no links out of the tree, no device files) by our own check, since
  bookworm's Python 3.11.2 has no extraction filters.
Both images are checked first against their superblock (magic, and the size it declares), so
a truncated or foreign file is a one-line error naming it, before any tool runs.

Where the modules are (the directory the device's modprobe is pointed at): a partition holds
them under lib/modules/ (mounted at /system_dlkm or /vendor_dlkm; /system/lib/modules and
/vendor/lib/modules point there). Kleaf's build_system_dlkm / build_vendor_dlkm keep the
release directory, lib/modules/<release>/ (the S23's system_dlkm.img does), or flatten it;
devices' init scripts load from lib/modules, else lib/modules/* (`modprobe -a -d
/vendor/lib/modules/*`). So: lib/modules itself when it has a load list or .ko files, else
lib/modules/<the kernel's release>, else its only subdirectory. A directory without lib/modules
is taken to be the modules directory itself (what --system-dlkm DIR always took).
"""

from __future__ import annotations

import enum
import gzip
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bootverify import android
from bootverify.errors import InfraError, InputError, reading

EXTRACT_TIMEOUT = 300       # seconds for one image: a 100 MB vendor_dlkm takes a few

# Superblocks, both at byte 1024 of the image.
# fs/ext4/ext4.h struct ext4_super_block: s_blocks_count_lo at 4, s_log_block_size at 24
# (block size 1024 << it), s_magic (EXT4_SUPER_MAGIC 0xEF53, le16) at 56.
EXT4_SUPERBLOCK = 1024
EXT4_MAGIC = (56, b"\x53\xef")
EXT4_BLOCKS = 4
EXT4_LOG_BLOCK_SIZE = 24
# fs/erofs/erofs_fs.h EROFS_SUPER_OFFSET 1024, struct erofs_super_block: magic
# (EROFS_SUPER_MAGIC_V1 0xE0F5E1E2, le32) at 0, blkszbits at 12, blocks (le32) at 36.
EROFS_SUPERBLOCK = 1024
EROFS_MAGIC = (0, b"\xe2\xe1\xf5\xe0")
EROFS_BLKSZBITS = 12
EROFS_BLOCKS = 36
GZIP_MAGIC = b"\x1f\x8b"
TAR_MAGIC = (257, b"ustar")      # POSIX tar header's magic field

MODULES_ROOT = "lib/modules"


class Format(enum.StrEnum):
    DIRECTORY = "directory"
    EXT4 = "ext4"
    EROFS = "erofs"
    STAGING_ARCHIVE = "staging archive"


@dataclass(frozen=True)
class PartitionTree:
    """A partition's files on the host, and the modules directory in them."""
    source: Path            # what was given: the directory, image or archive
    format: Format
    root: Path              # the partition's root (for an image or archive: a temp directory)
    modules_dir: Path       # root / device_dir
    device_dir: str         # where the modules are on the partition, e.g. lib/modules/5.15.78

    def label(self, path: Path) -> str:
        """A file under `root` as the report names it: `system_dlkm.img:lib/modules/x.ko`."""
        if self.format is Format.DIRECTORY:
            return str(path)
        return f"{self.source}:{path.relative_to(self.root)}"


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 4], "little")


def detect(path: Path) -> Format:
    """The format of `path` by its contents (a directory is a directory); InputError if none."""
    if path.is_dir():
        return Format.DIRECTORY
    with reading(path), open(path, "rb") as f:
        head = f.read(EXT4_SUPERBLOCK + 1024)
        size = f.seek(0, 2)
    ext4 = head[EXT4_SUPERBLOCK:]
    erofs = head[EROFS_SUPERBLOCK:]
    if ext4[EXT4_MAGIC[0]:EXT4_MAGIC[0] + 2] == EXT4_MAGIC[1]:
        declared = _u32(ext4, EXT4_BLOCKS) * (1024 << _u32(ext4, EXT4_LOG_BLOCK_SIZE))
        _check_size(path, "ext4", declared, size)
        return Format.EXT4
    if erofs[:4] == EROFS_MAGIC[1]:
        declared = _u32(erofs, EROFS_BLOCKS) << erofs[EROFS_BLKSZBITS]
        _check_size(path, "erofs", declared, size)
        return Format.EROFS
    if head[:2] == GZIP_MAGIC or head[TAR_MAGIC[0]:TAR_MAGIC[0] + 5] == TAR_MAGIC[1]:
        return Format.STAGING_ARCHIVE
    raise InputError(path, f"not a directory, an ext4 or erofs partition image or a staging "
                           f"archive (.tar.gz): {_what(head, size)}")


def _what(head: bytes, size: int) -> str:
    if size < EXT4_SUPERBLOCK + 64:
        return f"{size} bytes, too short for a superblock"
    return "no ext4 (0xEF53 at 1080) or erofs (0xE0F5E1E2 at 1024) magic, no gzip or tar header"


def _check_size(path: Path, fs: str, declared: int, size: int) -> None:
    if size < declared:
        raise InputError(path, f"truncated {fs} image: its superblock says {declared} bytes, "
                               f"the file has {size}")


def _tool(argv: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=EXTRACT_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise InfraError(f"{argv[0]} not found: reading {path} needs it (e2fsprogs for ext4, "
                         f"erofs-utils for erofs; ci/setup.sh installs both)") from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"{argv[0]} {path}: no answer in {EXTRACT_TIMEOUT} s") from None


def _extract_ext4(path: Path, dest: Path) -> None:
    proc = _tool(["debugfs", "-R", f"rdump / {dest}", str(path)], path)
    # debugfs prints its version banner on stderr and exits 0 whatever happened.
    errors = [line for line in proc.stderr.splitlines()
              if line.strip() and not line.startswith("debugfs ")]
    if proc.returncode or errors:
        raise InputError(path, f"debugfs cannot read this ext4 image: "
                               f"{(errors or [proc.stderr.strip()])[0]}")


def _extract_erofs(path: Path, dest: Path) -> None:
    proc = _tool(["fsck.erofs", f"--extract={dest}", "--no-preserve", str(path)], path)
    if proc.returncode:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise InputError(path, f"fsck.erofs cannot read this erofs image: "
                               f"{lines[0] if lines else f'exit {proc.returncode}'}")


TAR_FILTERS = hasattr(tarfile, "fully_trusted_filter")     # Python 3.11.4 on (PEP 706)


def _data_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The members, vetted as tarfile's "data" filter (PEP 706) vets them, here so that every
    Python does the same (bookworm's 3.11.2 has no filters): no absolute name or `..`, no link
    pointing outside, no device or FIFO; no setuid, setgid or world-writable modes."""
    out = []
    for m in tar.getmembers():
        name = PurePosixPath(m.name)
        if name.is_absolute() or ".." in name.parts:
            raise tarfile.TarError(f"member {m.name!r} lies outside the archive")
        if m.issym() or m.islnk():
            target = PurePosixPath(m.linkname)
            inside = posixpath.normpath(posixpath.join(
                str(name.parent) if m.issym() else "", m.linkname))
            if target.is_absolute() or inside == ".." or inside.startswith("../"):
                raise tarfile.TarError(f"member {m.name!r} links outside the archive "
                                       f"({m.linkname})")
        elif not (m.isfile() or m.isdir()):
            raise tarfile.TarError(f"member {m.name!r} is a device or FIFO")
        m.mode &= 0o755
        out.append(m)
    return out


def _extract_archive(path: Path, dest: Path) -> None:
    with open(path, "rb") as f:
        mode = "r:gz" if f.read(2) == GZIP_MAGIC else "r:"
    # Members vetted by _data_members: where tarfile has filters, it need not filter again.
    trusted = {"filter": "fully_trusted"} if TAR_FILTERS else {}
    try:
        with tarfile.open(path, mode) as tar:
            tar.extractall(dest, members=_data_members(tar), **trusted)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(path, f"not a readable staging archive: {e}") from None


EXTRACTORS = {Format.EXT4: _extract_ext4, Format.EROFS: _extract_erofs,
              Format.STAGING_ARCHIVE: _extract_archive}


def _check_links(root: Path, source: Path) -> None:
    """A symlink in an image that leads out of it would read the host's files: refuse it."""
    top = root.resolve()
    for p in root.rglob("*"):
        if not p.is_symlink():
            continue
        try:
            inside = p.resolve().is_relative_to(top)
        except (RuntimeError, OSError):         # a loop: Python 3.11 raises RuntimeError
            raise InputError(source, f"{p.relative_to(root)}: a symbolic link loop") from None
        if not inside:
            raise InputError(source, f"{p.relative_to(root)}: a symbolic link out of the "
                                     f"partition ({p.readlink()})")


def _has_modules(d: Path) -> bool:
    return any((d / f).is_file() for f in android.LOAD_LISTS.values()) or \
        any(d.glob("*.ko"))


def modules_dir(root: Path, release: str | None, source: Path) -> str:
    """Where on the partition its modules are (the module docstring's rule), relative."""
    base = root / MODULES_ROOT
    if base.exists() and not base.is_dir():
        raise InputError(source, f"{MODULES_ROOT}: not a directory")
    if not base.is_dir():
        return ""
    if _has_modules(base):
        return MODULES_ROOT
    subdirs = sorted(d.name for d in base.iterdir() if d.is_dir())
    if release in subdirs:
        return f"{MODULES_ROOT}/{release}"
    if len(subdirs) == 1:
        return f"{MODULES_ROOT}/{subdirs[0]}"
    if not subdirs:
        raise InputError(source, f"{MODULES_ROOT}: no load list, no .ko files, no release "
                                 f"directory")
    raise InputError(source, f"{MODULES_ROOT}: several release directories "
                             f"({', '.join(subdirs)}) and none is the kernel's "
                             f"({release or 'unknown: give --boot or --kernel'})")


@contextmanager
def open_partition(path: Path | str, release: str | None = None) -> Iterator[PartitionTree]:
    """The partition's files, extracted for as long as the `with` lasts; `release` (uname -r
    of the kernel, when known) picks lib/modules/<release>."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InputError(path, "No such file or directory")
    fmt = detect(path)
    if fmt is Format.DIRECTORY:
        rel = modules_dir(path, release, path)
        yield PartitionTree(path, fmt, path, path / rel, rel)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bootverify-partition-"))
    try:
        root = tmp / "root"
        root.mkdir()
        EXTRACTORS[fmt](path, root)
        _check_links(root, path)
        rel = modules_dir(root, release, path)
        yield PartitionTree(path, fmt, root, root / rel, rel)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
