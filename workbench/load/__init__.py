"""Load engine: open/closed-loop HTTP load with coordinated-omission-corrected HDR latencies."""

from workbench.load._engine import plan_load, run_load
from workbench.load._profile import LoadProfile, Stage
from workbench.load._result import ERROR_CLASSES, LoadResult
from workbench.load._scenario import Endpoint, Scenario
from workbench.load._slo import SLO

__all__ = [
    "ERROR_CLASSES",
    "SLO",
    "Endpoint",
    "LoadProfile",
    "LoadResult",
    "Scenario",
    "Stage",
    "plan_load",
    "run_load",
]
