"""What first-stage init decides before it loads a module (AOSP system/core
init/first_stage_init.cpp, REFERENCE.md §4): the boot mode, the load list of that mode, the
module directory, whether failures are fatal, whether loading would be parallel.

bootconfig is matched as first_stage_init matches /proc/bootconfig, whose lines the kernel
writes as `key = "value"`: `proc_bootconfig` turns the image's bootconfig into that text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from bootverify import android
from bootverify.android import BootMode

BOOTCONFIG_TRAILER = 8 + len(android.BOOTCONFIG_MAGIC)     # size, checksum, magic


def proc_bootconfig(raw: bytes) -> str:
    """The bootconfig as /proc/bootconfig shows it: one `key = "value"` line per key (values of
    an array joined as `"a", "b"`); comments and the trailer dropped."""
    if raw.endswith(android.BOOTCONFIG_MAGIC):
        raw = raw[:-BOOTCONFIG_TRAILER]
    out = []
    text = raw.decode("utf-8", "replace")
    for stmt in re.split(r"[\n;]", text):
        stmt = stmt.split("#", 1)[0].strip()
        key, eq, value = stmt.partition("=")
        if not eq or not key.strip():
            continue
        values = [v.strip().strip("\"'") for v in value.split(",")]
        out.append(f"{key.strip()} = " + ", ".join(f'"{v}"' for v in values))
    return "".join(line + "\n" for line in out)


@dataclass(frozen=True)
class BootFacts:
    """first_stage_init's reading of the command line and bootconfig."""
    mode: BootMode
    mode_why: str                  # what decided the mode
    first_stage_console: int       # 0: strict; 1: console on failure; 2: ignore failures
    parallel: bool                 # androidboot.load_modules_parallel = "true"


def IsChargerMode(cmdline: str, bootconfig: str) -> bool:
    return android.CHARGER_BOOTCONFIG in bootconfig or android.CHARGER_CMDLINE in cmdline


def ForceNormalBoot(cmdline: str, bootconfig: str) -> bool:
    return (android.FORCE_NORMAL_BOOTCONFIG in bootconfig
            or android.FORCE_NORMAL_CMDLINE in cmdline)


def GetBootMode(cmdline: str, bootconfig: str, has_recovery: bool) -> tuple[BootMode, str]:
    """Charger if bootconfig or cmdline says so; recovery if the ramdisk has /system/bin/recovery
    (IsRecoveryMode) and androidboot.force_normal_boot is not 1; else normal."""
    if IsChargerMode(cmdline, bootconfig):
        return BootMode.CHARGER, "androidboot.mode=charger"
    if has_recovery and not ForceNormalBoot(cmdline, bootconfig):
        return BootMode.RECOVERY, f"the ramdisk has /{android.RECOVERY_BINARY}"
    return BootMode.NORMAL, "no charger mode, no recovery"


def FirstStageConsole(cmdline: str, bootconfig: str) -> int:
    """bootconfig `androidboot.first_stage_console = "N"` first, else the cmdline's; anything
    unreadable or out of range is 0 (disabled: strict)."""
    m = re.search(re.escape(android.FIRST_STAGE_CONSOLE_BOOTCONFIG) + r' = "(\d+)"', bootconfig)
    if android.FIRST_STAGE_CONSOLE_BOOTCONFIG + " =" not in bootconfig:
        m = re.search(re.escape(android.FIRST_STAGE_CONSOLE_CMDLINE) + r"(\d+)", cmdline)
    value = int(m.group(1)) if m else 0
    return value if 0 <= value <= android.FIRST_STAGE_CONSOLE_MAX else 0


def boot_facts(cmdline: str, bootconfig: str, has_recovery: bool,
               forced: BootMode | None = None) -> BootFacts:
    mode, why = (forced, "--boot-mode") if forced else GetBootMode(cmdline, bootconfig,
                                                                    has_recovery)
    return BootFacts(mode, why, FirstStageConsole(cmdline, bootconfig),
                     android.LOAD_PARALLEL_BOOTCONFIG in bootconfig)


def GetModuleLoadList(mode: BootMode, present: Collection[str]) -> str:
    """The mode's load list; a missing mode-specific file falls back to modules.load."""
    file = android.LOAD_LISTS[mode]
    return file if file in present else android.MODULES_LOAD


def GetPageSizeSuffix(image: bytes) -> str:
    """The kernel's page size as first_stage_init names it: "" (4 KiB), "_16k", "_64k". From the
    arm64 Image header's flags (Documentation/arch/arm64/booting.rst: bits 1-2, 0 unspecified,
    1 4K, 2 16K, 3 64K)."""
    flags = int.from_bytes(image[24:32], "little") if len(image) >= 32 else 0
    return {2: "_16k", 3: "_64k"}.get((flags >> 1) & 3, "")


def module_dir_choice(dirs: Sequence[str], release: str, suffix: str,
                      loads_any: Callable[[str], bool]) -> str:
    """LoadKernelModules()' directory under /lib/modules ("" for /lib/modules itself): the
    `uname -r` + page-size-suffix directory wins outright; else the sorted directories named
    major.minor... (with no other page-size suffix), the first whose load list loads a module
    (`loads_any`, the plan's static stand-in for GetModuleCount() > 0); else /lib/modules."""
    if release + suffix in dirs:
        return release + suffix
    m = re.match(r"(\d+)\.(\d+)", release)
    for d in sorted(dirs):
        dm = re.match(r"(\d+)\.(\d+)", d)
        other_suffix = next((s for s in android.PAGE_SIZE_SUFFIXES if d.endswith(s)), suffix)
        if (m and dm and dm.groups() == m.groups() and other_suffix == suffix
                and loads_any(d)):
            return d
    return ""
