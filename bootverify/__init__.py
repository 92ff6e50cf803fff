"""bootverify: does a device's kernel module set load on this kernel? Checked statically and
for real, in qemu."""

import importlib.metadata


def version() -> str:
    """The installed package's version (pyproject.toml's [project] version)."""
    try:
        return importlib.metadata.version("bootverify")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"
