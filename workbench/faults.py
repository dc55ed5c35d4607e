"""Faults on purpose: stop or freeze a server of the stack, or kill a service worker, during a run."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import psutil

from workbench._errors import InputError, allowed, positive_float
from workbench.launcher import ServiceProcess
from workbench.stack import Stack

SERVERS = ("postgres", "redis", "upstream")
MODES = ("stop", "freeze")


@dataclass
class Outage:
    """Take one server down `at` seconds after entering, for `duration` seconds, in a thread.

    mode "stop" ends the server (clients get refused connections) and starts it again on the same
    port and data; "freeze" sends SIGSTOP then SIGCONT (clients hang until their timeouts).
    Leaving the block waits for the server to be back, even when the body raised.
    """

    stack: Stack
    server: str
    at: float
    duration: float
    mode: str = "stop"
    down_at: float | None = field(default=None, init=False)  # epoch seconds
    up_at: float | None = field(default=None, init=False)
    error: BaseException | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise InputError("server", f"must be one of {allowed(SERVERS)}, got {self.server!r}")
        if self.mode not in MODES:
            raise InputError("mode", f"must be one of {allowed(MODES)}, got {self.mode!r}")
        positive_float("at", self.at, strict=False)
        positive_float("duration", self.duration)
        if self.server not in self.stack.pids():
            raise InputError("server", f"{self.server!r} was not started by this stack")

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=f"outage-{self.server}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cancel.set()
        assert self._thread is not None
        self._thread.join()
        if self.error is not None and exc is None:
            raise self.error

    def _run(self) -> None:
        if self._cancel.wait(self.at):
            return
        try:
            self._down()
            self.down_at = time.time()
            # The outage lasts its full duration even when the block is left early.
            time.sleep(self.duration)
        except BaseException as exc:  # reported on leaving the block
            self.error = exc
        finally:
            try:
                self._up()
                self.up_at = time.time()
            except BaseException as exc:
                self.error = self.error or exc

    def _down(self) -> None:
        self._stopped = True
        if self.mode == "stop":
            self.stack.stop_server(self.server)
        else:
            freeze(self.stack.pids()[self.server])

    def _up(self) -> None:
        if not self._stopped:
            return
        if self.mode == "stop":
            self.stack.start_server(self.server)
        else:
            thaw(self.stack.pids()[self.server])

    def seconds(self, started_at: float) -> tuple[float, float]:
        """The outage as (start, end) seconds since a run's measured window began (epoch)."""
        if self.down_at is None or self.up_at is None:
            raise RuntimeError("the outage has not happened yet")
        return self.down_at - started_at, self.up_at - started_at


def freeze(pid: int) -> None:
    """SIGSTOP a process and all its descendants (PostgreSQL: the postmaster and its backends)."""
    _signal_tree(pid, signal.SIGSTOP)


def thaw(pid: int) -> None:
    """SIGCONT a process and all its descendants (undoes freeze)."""
    _signal_tree(pid, signal.SIGCONT)


@contextlib.contextmanager
def frozen(stack: Stack, server: str) -> Iterator[int]:
    """A server of the stack frozen (SIGSTOP) inside the block, resumed on leaving it, even on
    an error; yields its pid."""
    if server not in SERVERS:
        raise InputError("server", f"must be one of {allowed(SERVERS)}, got {server!r}")
    pid = stack.pids().get(server)
    if pid is None:
        raise InputError("server", f"{server!r} was not started by this stack")
    try:
        freeze(pid)
        yield pid
    finally:
        thaw(pid)


def _signal_tree(pid: int, sig: int) -> None:
    # The root first: a frozen postmaster forks no backend the list below would miss.
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def kill_worker(service: ServiceProcess, *, sig: int = signal.SIGKILL) -> int:
    """Kill one worker of a multi-worker service (gunicorn replaces it); the pid killed."""
    pids = service.pids()
    if len(pids) < 2:
        raise InputError("service", "has no worker processes to kill (use server='gunicorn')")
    master = psutil.Process(pids[0])
    workers = [p for p in master.children() if "resource_tracker" not in " ".join(p.cmdline())]
    if not workers:
        raise InputError("service", "has no worker processes to kill")
    # The worker holding the most client connections: the kernel may have handed a worker none
    # (one accept()-ing worker can take every connection), and killing that one breaks nothing.
    victim = max(workers, key=lambda proc: _clients(proc, service.port))
    victim.send_signal(sig)
    return victim.pid


def _clients(proc: psutil.Process, port: int | None) -> int:
    """Client connections a worker holds on the service's port (not its database/Redis ones)."""
    try:
        return sum(
            c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
            for c in proc.net_connections(kind="tcp")
        )
    except psutil.Error:
        return 0


def workers(service: ServiceProcess) -> list[int]:
    """Pids of the service's direct worker processes (the children of its master)."""
    pids = service.pids()
    if not pids:
        return []
    return [p.pid for p in psutil.Process(pids[0]).children()]
