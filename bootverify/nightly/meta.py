"""What a run was, for the report's `meta` (and meta.json): the schema and tool versions, qemu's
version and the accelerator used, the host, every input with its sha256, when it ran and how
long each boot took. `merge` (issue 13) joins reports by these hashes and the schema version."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootverify import version
from bootverify.errors import InfraError, reading
from bootverify.runtime.vm import VMConfig, accel_args

# 1: the reports before `meta` (none had a version); 2: meta, summary, error, expect, baseline,
# runtime problems' static_kind.
SCHEMA_VERSION = 2
QEMU_VERSION_TIMEOUT = 30
HASH_CHUNK = 1 << 20


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def iso(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with reading(path), open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(directory: Path) -> tuple[str, int]:
    """A directory's digest: each file's relative path and sha256, sorted; and the file count."""
    with reading(directory):
        files = sorted(p for p in directory.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(directory)}\0{sha256_file(p)}\n".encode())
    return h.hexdigest(), len(files)


@dataclass(frozen=True)
class Input:
    role: str                  # boot, vendor_kernel_boot, system_dlkm, symvers, expect, ...
    path: str
    sha256: str
    files: int | None = None   # a directory: how many files its digest covers


def hash_inputs(inputs: Sequence[tuple[str, Path | None]]) -> tuple[Input, ...]:
    out = []
    for role, path in inputs:
        if path is None:
            continue
        if Path(path).is_dir():
            digest, n = sha256_tree(Path(path))
            out.append(Input(role, str(path), digest, n))
        else:
            out.append(Input(role, str(path), sha256_file(Path(path))))
    return tuple(out)


def qemu_version(qemu: str) -> str:
    """The first line of `qemu --version`, or why there is none."""
    found = shutil.which(qemu)
    if not found:
        return f"{qemu}: not found"
    try:
        r = subprocess.run([found, "--version"], capture_output=True, text=True,
                           timeout=QEMU_VERSION_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{found}: {e}"
    return (r.stdout.splitlines() or [f"{found}: no output (status {r.returncode})"])[0]


def accel_for(config: VMConfig) -> str:
    """"kvm" or "tcg", as vm.accel_args() chooses for `config` (or why neither)."""
    try:
        args = accel_args(config)
    except InfraError as e:
        return f"unavailable: {e}"
    return args[args.index("-accel") + 1]


def host() -> dict[str, Any]:
    return {"hostname": platform.node() or "localhost", "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}",
            "python": sys.version.split()[0], "cpus": os.cpu_count()}


@dataclass(frozen=True)
class RunMeta:
    name: str
    started: datetime.datetime
    argv: tuple[str, ...]
    inputs: tuple[Input, ...]
    qemu: str
    qemu_version: str
    accel: str

    def json(self, finished: datetime.datetime, boots: Sequence[Any],
             infra_retries: Sequence[str]) -> dict[str, Any]:
        """boots: runner.BootRecord of the run that made the report."""
        return {
            "schema_version": SCHEMA_VERSION, "tool": "bootverify",
            "tool_version": version(), "name": self.name, "argv": list(self.argv),
            "started_at": iso(self.started), "finished_at": iso(finished),
            "seconds": round((finished - self.started).total_seconds(), 1),
            "host": host(),
            "qemu": {"path": self.qemu, "version": self.qemu_version, "accel": self.accel},
            "inputs": [{"role": i.role, "path": i.path, "sha256": i.sha256}
                       | ({"files": i.files} if i.files is not None else {})
                       for i in self.inputs],
            "boots": [{"seconds": round(b.seconds, 3), "reason": b.reason,
                       "restored": b.restored, "restore_seconds": round(b.restore_seconds, 3)}
                      for b in boots],
            "infra_retries": list(infra_retries),
        }

