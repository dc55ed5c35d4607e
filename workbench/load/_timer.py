"""Waker: calls back at an absolute monotonic time, sub-millisecond, without spinning the loop.

Event loops keep timers in whole milliseconds (libuv, epoll): a `call_later` shorter than that
fires on the next iteration, so pacing a few thousand arrivals a second with it busy-waits a
core — taken from the service it measures on a small machine. On Linux a timerfd wakes the
loop at the exact nanosecond deadline through the same poller; elsewhere deadlines round up
to the next millisecond (later, never earlier, so the send lag is recorded, not hidden).
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import sys
import time
from collections.abc import Callable

# Arrivals closer together than this share one wake-up: bounds wake-ups to 4,000 a second.
MIN_GAP_S = 0.00025
_CLOCK_MONOTONIC = 1  # time.monotonic() reads CLOCK_MONOTONIC on Linux
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        return libc
    except (OSError, AttributeError):
        return None


class Waker:
    """Calls `callback` once at or just after the deadline last given to `at`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[], None],
        *,
        min_gap: float = MIN_GAP_S,
    ) -> None:
        self.loop = loop
        self.callback = callback
        self.min_gap = min_gap
        self.fd = -1
        self.handle: asyncio.TimerHandle | None = None
        libc = _libc()
        if libc is not None:
            fd = libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0:
                self.libc, self.fd = libc, fd
                self.spec = _Itimerspec()
                self.spec_ref = ctypes.byref(self.spec)
                loop.add_reader(fd, self._fired)

    def at(self, when: float) -> None:
        """Arm for `when` (time.monotonic() seconds), replacing any earlier deadline."""
        when = max(when, time.monotonic() + self.min_gap)
        if self.fd >= 0:
            seconds = math.floor(when)
            self.spec.it_value.tv_sec = seconds
            self.spec.it_value.tv_nsec = int((when - seconds) * 1e9)
            self.libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, self.spec_ref, None)
            return
        if self.handle is not None:
            self.handle.cancel()
        delay = math.ceil((when - time.monotonic()) * 1000) / 1000
        self.handle = self.loop.call_later(max(0.001, delay), self.callback)

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:  # disarmed or re-armed since the poller saw it
            return
        self.callback()

    def close(self) -> None:
        """Stop: no callback after this."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


SCHEDSTAT = "/proc/thread-self/schedstat"


def run_queue_wait() -> float:
    """Seconds this thread has waited, runnable, for a core (Linux schedstat; 0 elsewhere).

    CPU time alone misses a generator that wants to run but shares the machine: its CPU stays
    below 100% while it is what limits the run.
    """
    try:
        with open(SCHEDSTAT, "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0
