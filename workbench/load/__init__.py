"""Load engine: open/closed-loop HTTP load with coordinated-omission-corrected HDR latencies.

Closed loop (rate=None): each of `connections` virtual users sends its next request when the last
one is answered (plus think_time). Open loop (rate or stages): requests are due on a schedule
(constant or Poisson); `connections` is a cap, opened as needed. Latency is measured from each
request's intended send time, service time from the actual send. Requests intended during warm-up
are not recorded; requests intended in the window but answered after it (the drain, at most
min(timeout, 2 s)) count in the histograms and in `late`, not in throughput.
"""

from workbench.load._engine import run_load
from workbench.load._load import Load
from workbench.load._local import Generators
from workbench.load._plan import LoadPlan, plan_load
from workbench.load._profile import LoadProfile, Stage
from workbench.load._result import (
    ERROR_CLASSES,
    Cause,
    LoadFailed,
    LoadInterrupted,
    LoadResult,
    WarmupEnd,
)
from workbench.load._scenario import Endpoint, Scenario
from workbench.load._slo import SLO

__all__ = [
    "ERROR_CLASSES",
    "SLO",
    "Cause",
    "Endpoint",
    "Generators",
    "Load",
    "LoadFailed",
    "LoadInterrupted",
    "LoadPlan",
    "LoadProfile",
    "LoadResult",
    "Scenario",
    "Stage",
    "WarmupEnd",
    "plan_load",
    "run_load",
]
