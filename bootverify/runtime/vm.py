"""qemu-system-aarch64 for one guest: launch, reach the agent, always kill and reap.

`Workspace` holds the temp dir with the kernel and initrd files for a run (several boots reuse
them); `VirtualMachine` is one qemu process with its console. Both are context managers and
both are also registered for atexit, so neither a qemu process nor a temp dir survives an
exception, Ctrl-C (KeyboardInterrupt runs the finally blocks) or a normal interpreter exit;
`signals_as_interrupt()` (errors.py, re-exported here) turns SIGTERM and SIGHUP into
KeyboardInterrupt for the same effect.
If the Python process is killed outright, qemu still ends: it runs in its own session on the pty
that pexpect holds, the pty's closing sends it SIGHUP and qemu exits on SIGHUP; the temp dir is
then left, and the next Workspace removes temp dirs of bootverify processes that no longer live.

qemu: `-M virt`, TCG with `-cpu cortex-a57`; on an aarch64 host with a usable /dev/kvm, KVM with
`-cpu host`. The serial console is on stdio (the pexpect pty), no monitor, no default devices,
`-no-reboot` so that a guest panic (panic=-1 on the command line) ends qemu.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pexpect

from bootverify.errors import InfraError
from bootverify.errors import signals_as_interrupt as signals_as_interrupt  # re-exported
from bootverify.runtime.boot import GuestBoot
from bootverify.runtime.console import Console

QEMU = "qemu-system-aarch64"
TEMP_PREFIX = "bootverify-"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


@dataclass(frozen=True)
class VMConfig:
    qemu: str = QEMU
    memory_mb: int | None = None   # None: sized to the initrd, see guest_memory_mb()
    smp: int = 2
    accel: str = "auto"            # "auto" (KVM when usable), "kvm" or "tcg"
    cpu: str | None = None         # None: host with KVM, cortex-a57 with TCG
    boot_timeout: float = 120.0    # seconds to the agent's ready line
    extra_args: tuple[str, ...] = ()


def kvm_usable() -> bool:
    """An aarch64 host whose /dev/kvm this process may open."""
    if platform.machine().lower() not in ("aarch64", "arm64"):
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def qemu_path(config: VMConfig) -> str:
    found = shutil.which(config.qemu)
    if not found:
        raise InfraError(f"{config.qemu} not found: install QEMU's aarch64 system emulator "
                         f"(Debian: apt-get install qemu-system-arm)")
    return found


def accel_args(config: VMConfig) -> list[str]:
    use_kvm = config.accel == "kvm" or (config.accel == "auto" and kvm_usable())
    if config.accel == "kvm" and not kvm_usable():
        raise InfraError("KVM requested but this is not an aarch64 host with a usable /dev/kvm")
    if use_kvm:
        return ["-accel", "kvm", "-cpu", config.cpu or "host"]
    return ["-accel", "tcg", "-cpu", config.cpu or "cortex-a57"]


# --- cleanup registry: everything live is killed / removed at exit ---

_live_lock = threading.Lock()
_live_vms: set[VirtualMachine] = set()
_live_dirs: set[Path] = set()


def cleanup_all() -> None:
    """Kill and reap every qemu of this process and remove its temp dirs (also run at exit)."""
    with _live_lock:
        vms, dirs = list(_live_vms), list(_live_dirs)
    for vm in vms:
        vm.kill()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(cleanup_all)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_dirs(parent: Path | None = None) -> list[Path]:
    """Remove bootverify temp dirs whose process is gone (a run killed with SIGKILL)."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for d in parent.glob(TEMP_PREFIX + "*"):
        m = _TEMP_NAME.match(d.name)
        if m and d.is_dir() and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


class Workspace:
    """A temp dir holding -kernel and -initrd for one run; removed on exit whatever happens."""

    def __init__(self, guest: GuestBoot, parent: Path | None = None) -> None:
        self.guest = guest
        self.parent = parent
        self.dir: Path | None = None

    def __enter__(self) -> Workspace:
        sweep_stale_dirs(self.parent)
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-",
                                             dir=self.parent))
        except OSError as e:
            raise InfraError(f"cannot make a temp dir for qemu's files: {e}") from None
        with _live_lock:
            _live_dirs.add(self.dir)
        try:
            self.kernel.write_bytes(self.guest.kernel)
            self.initrd.write_bytes(self.guest.initrd)
        except OSError as e:
            self.close()
            raise InfraError(f"cannot write the guest's kernel and initrd: {e}") from None
        except BaseException:
            self.close()
            raise
        return self

    @property
    def kernel(self) -> Path:
        assert self.dir is not None
        return self.dir / "Image"

    @property
    def initrd(self) -> Path:
        assert self.dir is not None
        return self.dir / "initrd"

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            with _live_lock:
                _live_dirs.discard(self.dir)
            self.dir = None

    def __exit__(self, *exc: object) -> None:
        self.close()


# The guest holds the initrd, the tree it unpacks to (modules compress ~3-4x), and then the
# modules loaded from it: 16x the initrd on top of a base covers Debian's 3,685 modules (94 MiB
# of lz4'd initrd: 2 GB) and leaves small sets at the base.
GUEST_MEMORY_BASE_MB = 1024
GUEST_MEMORY_PER_INITRD_MB = 16


def guest_memory_mb(config: VMConfig, initrd_bytes: int) -> int:
    if config.memory_mb:
        return config.memory_mb
    return GUEST_MEMORY_BASE_MB + GUEST_MEMORY_PER_INITRD_MB * (initrd_bytes >> 20)


def qemu_args(ws: Workspace, config: VMConfig) -> list[str]:
    memory = guest_memory_mb(config, len(ws.guest.initrd))
    return ["-M", "virt", *accel_args(config), "-m", str(memory),
            "-smp", str(config.smp), "-nodefaults", "-display", "none", "-monitor", "none",
            "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
            "-no-reboot", "-kernel", str(ws.kernel), "-initrd", str(ws.initrd),
            "-append", ws.guest.cmdline, *config.extra_args]


class VirtualMachine:
    """One qemu process driven through its serial console.

    with VirtualMachine(ws, config, log) as vm:   # boots and waits for the agent
        vm.console.run("uname -r", 10)
    """

    def __init__(self, ws: Workspace, config: VMConfig = VMConfig(), log: TextIO | None = None,
                 first_seq: int = 1, label: str = "") -> None:
        self.ws = ws
        self.config = config
        self.log = log
        self.first_seq = first_seq
        self.label = label              # written to the console log before this boot's output
        self.child: pexpect.spawn | None = None
        self.console: Console | None = None
        self.boot_seconds: float | None = None

    def start(self) -> Console:
        qemu = qemu_path(self.config)
        args = qemu_args(self.ws, self.config)
        if self.log is not None and self.label:
            self.log.write(self.label)
        start = time.monotonic()
        try:
            self.child = pexpect.spawn(qemu, args, encoding="utf-8", codec_errors="replace",
                                       timeout=None, maxread=65536, echo=False)
        except (pexpect.ExceptionPexpect, OSError) as e:
            raise InfraError(f"cannot start {qemu}: {e}") from None
        with _live_lock:
            _live_vms.add(self)
        try:
            self.console = Console(self.child, self.ws.guest.nonce, self.log, self.first_seq)
            self.console.wait_ready(self.config.boot_timeout)
        except BaseException:
            self.kill()
            raise
        self.boot_seconds = time.monotonic() - start
        return self.console

    def kill(self) -> None:
        """Kill qemu and reap it; safe to call twice, and from atexit."""
        child, self.child = self.child, None
        if child is None:
            return
        try:
            if child.isalive():
                child.terminate(force=True)
        except Exception:       # noqa: BLE001 - best effort, then make sure below
            pass
        try:
            if child.isalive():
                os.kill(child.pid, signal.SIGKILL)
            child.close(force=True)
        except Exception:       # noqa: BLE001
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.waitpid(child.pid, 0)
        with _live_lock:
            _live_vms.discard(self)

    def __enter__(self) -> VirtualMachine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@dataclass(frozen=True)
class Booter:
    """Boots `ws`'s guest in a new VirtualMachine at each call, returning it once the agent is
    ready (what runner.Runner takes to get its guests)."""
    ws: Workspace
    config: VMConfig = VMConfig()
    log: TextIO | None = None

    def __call__(self, *, first_seq: int = 1, label: str = "") -> VirtualMachine:
        machine = VirtualMachine(self.ws, self.config, self.log, first_seq, label)
        machine.start()
        return machine


DUMPDTB_TIMEOUT = 60


def virt_dtb(config: VMConfig = VMConfig()) -> bytes:
    """The device tree qemu's virt machine gives a guest (`-machine virt,dumpdtb=`): what the
    vendor boot images bootverify writes carry, as a board's dtb would be there."""
    with tempfile.TemporaryDirectory(prefix="bootverify-dtb-") as tmp:
        path = Path(tmp) / "virt.dtb"
        argv = [qemu_path(config), "-nodefaults", "-display", "none", "-machine",
                f"virt,dumpdtb={path}", "-cpu", "cortex-a57", "-m", "512"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=DUMPDTB_TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise InfraError(f"{argv[0]} dumpdtb: no answer in {DUMPDTB_TIMEOUT} s") from None
        if proc.returncode or not path.is_file():
            raise InfraError(f"{argv[0]} could not write the virt machine's dtb: "
                             f"{proc.stderr.strip()[:200]}")
        return path.read_bytes()
