"""Kernel Images (bootverify.readers.kernel): raw, gzip, lz4 legacy (as the kernel build and
`lz4 -l` write it) to the raw arm64 Image, with its release and vermagic."""

from __future__ import annotations

import subprocess

import pytest

from craft import RELEASE, VERMAGIC, VERMAGIC_FLAGS, fake_image, gz, need
from bootverify.errors import InputError
from bootverify.readers.kernel import parse_kernel, read_kernel
from bootverify.readers.ramdisk import Compression, compress

IMAGE = fake_image()


@pytest.mark.parametrize("how", [Compression.NONE, Compression.GZIP, Compression.LZ4_LEGACY,
                                 Compression.LZ4_FRAME])
def test_image_each_compression(how, tmp_path):
    path = tmp_path / "Image"
    path.write_bytes(compress(IMAGE, how))
    k = read_kernel(path)
    assert k.image == IMAGE
    assert k.compression is how
    assert k.release == RELEASE
    assert k.version.startswith(f"Linux version {RELEASE} (builder@host) (aarch64-linux-gnu-gcc")
    assert k.version.endswith("#1 SMP PREEMPT Thu Jan  1 00:00:00 UTC 2024")
    assert k.vermagic == VERMAGIC


def test_image_lz4_cli_and_gzip_cli(tmp_path):
    lz4 = need("lz4")
    (tmp_path / "Image").write_bytes(IMAGE)
    subprocess.run([lz4, "-l", "-9", "-f", "Image", "Image.lz4"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=300)
    subprocess.run(["gzip", "-k", "-9", "-n", "Image"], cwd=tmp_path, check=True, timeout=300)
    for name, how in (("Image.lz4", Compression.LZ4_LEGACY), ("Image.gz", Compression.GZIP)):
        k = read_kernel(tmp_path / name)
        assert (k.image, k.compression, k.release, k.vermagic) == (IMAGE, how, RELEASE, VERMAGIC)


@pytest.mark.parametrize("flags", ["SMP preempt mod_unload aarch64",
                                   "SMP mod_unload modversions aarch64",
                                   "mod_unload aarch64",
                                   "SMP PREEMPT_RT mod_unload modversions aarch64"])
def test_vermagic_flag_variants(flags):
    k = parse_kernel(fake_image(release="6.6.30-android15-8-g0123abcd", vermagic_flags=flags),
                     "Image")
    assert k.release == "6.6.30-android15-8-g0123abcd"
    assert k.vermagic == f"6.6.30-android15-8-g0123abcd {flags}"


def test_no_vermagic_string():
    """A kernel without modules has no VERMAGIC_STRING: release known, vermagic None."""
    image = fake_image(vermagic_flags="x86_64")
    k = parse_kernel(image, "Image")
    assert (k.release, k.vermagic) == (RELEASE, None)


def test_printf_template_is_not_the_banner():
    image = fake_image()
    assert b"Linux version %s" in image
    assert parse_kernel(image, "Image").release == RELEASE


def test_not_an_image(tmp_path):
    for data, what in ((b"\0" * 4096, "not an arm64 kernel Image"),
                       (gz(b"hello" * 100), "not an arm64 kernel Image (gzip"),
                       (b"", "not an arm64 kernel Image")):
        path = tmp_path / "vmlinux"
        path.write_bytes(data)
        with pytest.raises(InputError) as e:
            read_kernel(path)
        assert e.value.path == str(path) and what in str(e.value)


def test_image_without_banner():
    image = bytearray(fake_image())
    at = image.index(b"Linux version " + RELEASE.encode())
    image[at:at + 5] = b"Xinux"
    with pytest.raises(InputError) as e:
        parse_kernel(bytes(image), "Image")
    assert "Linux version" in str(e.value)


def test_corrupt_compressed_image(tmp_path):
    packed = bytearray(gz(IMAGE))
    packed[len(packed) // 2:len(packed) // 2 + 64] = b"\xff" * 64
    path = tmp_path / "Image.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(InputError) as e:
        read_kernel(path)
    assert e.value.path == str(path)
    packed = compress(IMAGE, Compression.LZ4_LEGACY)
    path.write_bytes(packed[:len(packed) // 2])
    with pytest.raises(InputError) as e:
        read_kernel(path)
    assert "truncated" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as e:
        read_kernel(tmp_path / "nope")
    assert e.value.path == str(tmp_path / "nope")


def test_flags_constant_matches_craft():
    assert VERMAGIC == f"{RELEASE} {VERMAGIC_FLAGS}"


@pytest.mark.parametrize("message, takes", [
    (b"\x013not an xz compressed module\n", "xz"),
    (b"\x013not a zstd compressed module\n", "zstd"),
    (b"\x013not a gzip compressed module\n", "gzip"),
    (b"", None),
    # printed without KERN_ERR it is not decompress.c's line
    (b"not an xz compressed module\n", None),
])
def test_in_kernel_module_decompression(message, takes):
    """CONFIG_MODULE_DECOMPRESS is read from decompress.c's pr_err() for the one format built."""
    k = parse_kernel(fake_image() + b"\0" + message + b"\0", "Image")
    assert k.module_decompress == takes
