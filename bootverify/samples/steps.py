"""Running the build steps of the sample images: each step logged, time-limited and killed with
its whole process tree on failure, timeout or Ctrl-C; stages built in temp directories renamed into
place; one builder at a time per cache.

An interrupted build leaves only temp directories, which the next build removes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from bootverify.errors import InfraError, writing

# Two steps at once: on two cores one kernel build's serial stretches (linking, kallsyms,
# modpost) overlap the other's compiling, and neither core idles when one finishes.
PARALLEL = 2

# Subprocess limits in seconds; a kernel build takes about 4 minutes here.
T_EXTRACT = 900
T_CONFIG = 300
T_KERNEL = 2400
T_MODULE = 300
T_TOOL = 120
PROGRESS_EVERY = 30.0
LOG_TAIL = 25
STOPPED = "stopped (another step failed)"

T = TypeVar("T")

# Cache layout under the cache root, besides PACKAGE-VERSION/ (the extracted source).
STAGES = ("sources", "kernels", "kmi", "samples")


class Runner:
    """Runs build steps: logged, time-limited, killed with their whole process tree on failure,
    timeout, Ctrl-C or when a parallel step failed."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress = progress
        self.abort = threading.Event()
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._lock:
            self.progress(line)

    def run(self, step: str, argv: Sequence[str | Path], *, cwd: Path, log: Path, timeout: float,
            env: dict[str, str] | None = None,
            report: Callable[[float], str] | None = None) -> None:
        """Run argv, output appended to log; `report(elapsed)` gives a progress line now and
        then."""
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [str(a) for a in argv]
        with open(log, "ab") as out:
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            try:
                # Own session: Ctrl-C reaches only us, and we kill the whole tree below. If we
                # die without cleaning up (SIGKILL), the kernel sends the step SIGTERM, which make
                # passes on to its jobs.
                proc = subprocess.Popen(["setpriv", "--pdeathsig", "TERM", "--", *cmd], cwd=cwd,
                                        stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, **(env or {})})
            except OSError as e:
                raise InfraError(f"sample images: {step}: cannot run {cmd[0]}: {e}") from None
            start = time.monotonic()
            next_report = start + PROGRESS_EVERY
            try:
                while True:
                    try:
                        rc = proc.wait(timeout=1.0)
                        break
                    except subprocess.TimeoutExpired:
                        now = time.monotonic()
                        if self.abort.is_set():
                            raise InfraError(f"sample images: {step}: {STOPPED}") from None
                        if now - start > timeout:
                            raise InfraError(self._failure(
                                step, log, f"no result in {timeout:.0f} s")) from None
                        if report and now >= next_report:
                            self.say(report(now - start))
                            next_report = now + PROGRESS_EVERY
            finally:
                if proc.returncode is None:     # timeout, Ctrl-C, a parallel step failed
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if rc:
            raise InfraError(self._failure(step, log, f"exit status {rc}"))

    @staticmethod
    def _failure(step: str, log: Path, why: str) -> str:
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        return f"sample images: step '{step}' failed ({why}); last lines of {log}:\n" + \
            "\n".join(lines)

    def parallel(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Run jobs on PARALLEL threads; the first failure stops the others and is raised."""
        with ThreadPoolExecutor(PARALLEL) as pool:
            futures = [pool.submit(job) for job in jobs]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:
                self.abort.set()
                raise
            if failed := [f.exception() for f in futures if f.done() and f.exception()]:
                self.abort.set()
                wait(futures)
                raise failed[0]  # type: ignore[misc]
            return [f.result() for f in futures]


@contextmanager
def staging(final: Path) -> Iterator[Path]:
    """A temp directory next to `final`, renamed to it on success, removed otherwise."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o755)            # mkdtemp's 0700 would keep other users out of the cache
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(cache: Path) -> None:
    """Temp directories of builds that were killed (we hold the lock: nobody else is building)."""
    for d in (cache, *(cache / s for s in STAGES)):
        for tmp in [*d.glob(".tmp-*"), *d.glob("work-*")]:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


@contextmanager
def locked(cache: Path) -> Iterator[None]:
    with writing(cache):
        cache.mkdir(parents=True, exist_ok=True)
        f = open(cache / ".lock", "w")  # held for the whole build
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]

