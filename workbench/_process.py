"""Child processes that die with their parent and stop for certain."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import os
import pwd
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil

from workbench import _fs
from workbench._errors import StackError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child after setuid and before exec: if the workbench is killed (even
    # SIGKILL), the kernel sends SIGTERM to this child, so no server is left behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def unprivileged_user() -> str | None:
    """The user to run servers that refuse root (PostgreSQL) as: 'nobody' when we are root."""
    return "nobody" if os.geteuid() == 0 else None


def user_ids(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of a user name, or None for the current user."""
    if user is None:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def reachable_by(path: Path, user: str | None) -> bool:
    """True when user can traverse every folder up to path (checked by mode bits, as root)."""
    ids = user_ids(user)
    if ids is None:
        return True
    uid, gid = ids
    for folder in [path, *path.parents]:
        if not folder.exists():
            continue
        st = folder.stat()
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid == gid:
            bit = 0o010
        else:
            bit = 0o001
        if folder.is_dir() and not st.st_mode & bit:
            return False
    return True


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
    detach: bool = False,
    pipe: bool = False,
) -> subprocess.Popen[bytes]:
    """Start argv as a child writing to log; it dies with us unless detach.

    pipe: its stdin and stdout are pipes to us (stderr still goes to log).
    """
    if not detach and threading.current_thread() is not threading.main_thread():
        # The kernel sends PDEATHSIG when the *thread* that forked the child ends: a child
        # started from a short-lived thread would be killed with it. Fork from one that stays.
        return (
            _spawner()
            .submit(_popen, argv, log=log, env=env, user=user, cwd=cwd, pipe=pipe)
            .result()
        )
    return _popen(argv, log=log, env=env, user=user, cwd=cwd, detach=detach, pipe=pipe)


def _popen(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None,
    user: str | None,
    cwd: Path | None,
    detach: bool = False,
    pipe: bool = False,
) -> subprocess.Popen[bytes]:
    ids = user_ids(user)
    log.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(_fs.open_append(log), "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE if pipe else out,
            stderr=out if pipe else subprocess.STDOUT,
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            extra_groups=[] if ids else None,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent,
        )


@functools.cache
def _spawner() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")


def run(
    argv: Sequence[str], *, user: str | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run argv to completion (as user), capturing its output."""
    ids = user_ids(user)
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        user=ids[0] if ids else None,
        group=ids[1] if ids else None,
        extra_groups=[] if ids else None,
        check=False,
    )


def started_at(pid: int) -> float | None:
    """The start time of process pid (psutil's create_time), or None when it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def same_process(pid: int, started: float) -> bool:
    """True when pid is still the process that started at `started` (not a reused pid)."""
    now = started_at(pid)
    return now is not None and abs(now - started) < 0.05


def stop_pid(
    pid: int, *, sig: int = signal.SIGTERM, timeout: float = 10.0, started: float | None = None
) -> None:
    """Send sig to pid and its process tree, wait, then SIGKILL whatever is left.

    started: the process's start time when it was recorded; a pid now used by another is left alone.
    """
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    if started is not None and not same_process(pid, started):
        return
    family = [root]
    with contextlib.suppress(psutil.Error):
        family += root.children(recursive=True)
    with contextlib.suppress(psutil.Error):
        root.send_signal(sig)
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def stop(
    proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> None:
    """Stop a child started by spawn and reap it."""
    if proc.poll() is None:
        stop_pid(proc.pid, sig=sig, timeout=timeout)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def stop_group(leader: int, *, since: float, timeout: float = 5.0) -> None:
    """Stop what is left of a dead leader's process group: the children its death orphaned
    (gunicorn workers outlive a SIGKILLed master by tens of seconds). `since` (epoch seconds,
    taken before the leader started) keeps a reused group id from matching strangers."""
    left = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == leader and proc.create_time() >= since - 1.0:
                left.append(proc)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(left, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def raise_interrupt(signum: int, frame: Any) -> None:
    """A signal handler: the signal interrupts like Ctrl-C, so context managers stop what they started."""
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt (so cleanup runs), when it would kill us."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield  # someone (the CLI, a server) already decided what SIGTERM does
        return
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def log_tail(log: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    name: str,
    log: Path,
    timeout: float,
) -> None:
    """Poll ready() until it is true; StackError with the log's tail if proc exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(
                f"{name} exited at start (code {proc.returncode}); log {log}:\n{log_tail(log)}"
            )
        if ready():
            return
        time.sleep(0.03)
    raise StackError(f"{name} was not ready in {timeout:g} s; log {log}:\n{log_tail(log)}")


class Managed:
    """Something started and stopped: a context manager that stops it even when the body raises."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
