"""A driver's seconds: what one second of the measured window counted, closed into a row for
the parent (its latency, service-time and send-lag histograms, counts, the process's CPU)."""

from __future__ import annotations

import time

from hdrh.histogram import HdrHistogram

from workbench import hdr as hist
from workbench.load._result import ERROR_CLASSES
from workbench.load._state import DriverState
from workbench.load._timer import run_queue_wait


class SecondRows(DriverState):
    """The per-second counters of a driver and their closing into rows sent to the parent."""

    # more of the driver's state these methods read (set by the driver)
    n_seconds: int
    second: int
    cpu_mark: tuple[float, float]
    wait_mark: float
    total_lat: HdrHistogram
    total_svc: HdrHistogram
    total_lag: HdrHistogram

    def _new_second(self) -> None:
        self.lat_d: dict[int, int] = {}
        self.svc_d: dict[int, int] = {}
        self.lag_d: dict[int, int] = {}
        self.sent = 0
        self.completed = 0
        self.late = 0
        self.err = dict.fromkeys(ERROR_CLASSES, 0)
        self.cap_waits = 0
        self.dropped = 0
        self.stale = 0

    def _tick(self) -> None:
        if self.done or self.second >= self.n_seconds - 1:
            return  # the last second closes when the run finishes, drain included
        self._close_second()
        if self.second < self.n_seconds - 1:
            delay = self.m_start + self.second + 1 - time.monotonic()
            self.tick_handle = self.loop.call_later(max(0.0, delay), self._tick)

    def _close_second(self) -> None:
        now, cpu = time.monotonic(), time.process_time()
        wall = now - self.cpu_mark[0]
        cpu_frac = (cpu - self.cpu_mark[1]) / wall if wall > 0 else 0.0
        self.cpu_mark = (now, cpu)
        waited = run_queue_wait()
        wait_frac = (waited - self.wait_mark) / wall if wall > 0 else 0.0
        self.wait_mark = waited
        sec_lat = hist.new_histogram()
        hist.record_counts(sec_lat, self.lat_d)
        self.total_lat.add(sec_lat)
        if self.open_loop:
            hist.record_counts(self.total_svc, self.svc_d)
        else:
            self.total_svc.add(sec_lat)
        sec_lag = hist.new_histogram()
        hist.record_counts(sec_lag, self.lag_d)
        self.total_lag.add(sec_lag)
        last = self.second >= self.n_seconds - 1
        length = self.profile.duration - self.second if last else 1.0
        row = {
            "second": self.second,
            "length": length,
            "sent": self.sent,
            "completed": self.completed,
            "late": self.late,
            "cap_waits": self.cap_waits,
            "dropped": self.dropped,
            "stale": self.stale,
            "cpu": cpu_frac,
            "wait": wait_frac,
            "lat": hist.encode(sec_lat),
            "lag": hist.encode(sec_lag),
            **self.err,
        }
        self.pipe.send(("second", self.spec.index, row))
        self.second += 1
        self._new_second()
