"""Android's own names and words, in one place: the module directory's files, the boot modes and
their load lists, the bootconfig / command line keys first-stage init reads, the module
directories of the stages, and libmodprobe's log lines.

From AOSP system/core (REFERENCE.md §4, read at a3b721a32): init/first_stage_init.cpp,
libmodprobe/libmodprobe.cpp, libmodprobe/libmodprobe_ext.cpp.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

# --- a modules directory (libmodprobe.cpp Modprobe::Modprobe, in the order it parses them) ---

MODULES_ALIAS = "modules.alias"
MODULES_DEP = "modules.dep"
MODULES_SOFTDEP = "modules.softdep"
MODULES_LOAD = "modules.load"
MODULES_OPTIONS = "modules.options"
MODULES_BLOCKLIST = "modules.blocklist"


class BootMode(enum.StrEnum):
    """first_stage_init.cpp BootMode."""
    NORMAL = "normal"
    RECOVERY = "recovery"
    CHARGER = "charger"


# first_stage_init.cpp GetModuleLoadList(): the load list of each mode.
LOAD_LISTS: Mapping[BootMode, str] = {
    BootMode.NORMAL: MODULES_LOAD,
    BootMode.RECOVERY: "modules.load.recovery",
    BootMode.CHARGER: "modules.load.charger",
}

# Every file of a modules directory that bootverify reads.
MODULES_FILES = (MODULES_ALIAS, MODULES_DEP, MODULES_SOFTDEP, *LOAD_LISTS.values(),
                 MODULES_OPTIONS, MODULES_BLOCKLIST)

# --- what first_stage_init.cpp looks for; bootconfig as /proc/bootconfig shows it ---

# IsChargerMode()
CHARGER_BOOTCONFIG = 'androidboot.mode = "charger"'
CHARGER_CMDLINE = "androidboot.mode=charger"
# IsRecoveryMode(): the generic ramdisk of a recovery-as-boot build has the recovery binary
RECOVERY_BINARY = "system/bin/recovery"
# ForceNormalBoot()
FORCE_NORMAL_BOOTCONFIG = 'androidboot.force_normal_boot = "1"'
FORCE_NORMAL_CMDLINE = "androidboot.force_normal_boot=1"
# FirstStageConsole(): 0 disabled, 1 console on failure, 2 ignore failure
FIRST_STAGE_CONSOLE_BOOTCONFIG = "androidboot.first_stage_console"
FIRST_STAGE_CONSOLE_CMDLINE = "androidboot.first_stage_console="
FIRST_STAGE_CONSOLE_MAX = 2
# The kernel's bootconfig trailer ends with this (after the size and checksum words).
BOOTCONFIG_MAGIC = b"#BOOTCONFIG\n"
# LoadKernelModules: LoadModulesParallel instead of LoadListedModules (plan/parallel.py)
LOAD_PARALLEL_BOOTCONFIG = 'androidboot.load_modules_parallel = "true"'

# --- the stages and their module directories ---

MODULE_BASE_DIR = "/lib/modules"                    # first stage, in the vendor ramdisk
PAGE_SIZE_SUFFIXES = ("_16k", "_64k")               # GetPageSizeSuffix(); 4 KiB pages: ""


class Stage(enum.StrEnum):
    FIRST = "first-stage"          # the vendor ramdisk's modules, before any partition is mounted
    SECOND = "second-stage"        # init rc insmod / modprobe from the dlkm partitions


ORIGINS = ("vendor_ramdisk", "system_dlkm", "vendor_dlkm")     # in load order
STAGE_OF: Mapping[str, Stage] = {"vendor_ramdisk": Stage.FIRST, "system_dlkm": Stage.SECOND,
                                 "vendor_dlkm": Stage.SECOND}
# The device image each module set comes from (what a fix names: "move X to ...'s modules.load").
DEVICE_IMAGE_OF: Mapping[str, str] = {"vendor_ramdisk": "vendor_kernel_boot",
                                      "system_dlkm": "system_dlkm", "vendor_dlkm": "vendor_dlkm"}
# Where bootverify's guest sees the dlkm partitions' modules (Android's mount points; a device's
# own modules.dep may name them as /system/lib/modules/..., /vendor/lib/modules/...).
DLKM_GUEST_DIRS: Mapping[str, str] = {
    "system_dlkm": "/system_dlkm/lib/modules",
    "vendor_dlkm": "/vendor_dlkm/lib/modules",
}

# --- libmodprobe's log lines (tag `init: `) ---

LOG_NOT_IN_DEP = "Module {name} not in dependency file"
LOG_BLOCKLISTED = "module {name} is blocklisted"
LOG_UNABLE = "LoadWithAliases was unable to load {name}, tried: {tried}"
LOG_FATAL = "Failed to load kernel modules"
# Insmod(): finit_module(fd, options, 0) on a compressed file; the kernel's elf_validity_check()
# (kernel/module/main.c) refuses what is not ELF.
INSMOD_COMPRESSED = ("compressed module file: libmodprobe's Insmod() passes finit_module() no "
                     "flags, so the kernel refuses it (ENOEXEC, Invalid ELF header magic)")
LOG_CONSOLE = "Failed to load kernel modules, starting console"
