"""The tuning workbench for FastAPI services: launch the service, load it, look inside, plot."""

from service.settings import ServiceSettings, SettingsError, ladder
from workbench import _quiet, advice, capacity, params, plots, store, tune  # noqa: F401  (_quiet first)
from workbench._errors import InputError, StackError
from workbench.bottleneck import Bottleneck, attribute
from workbench.climb import climb as ladder_climb
from workbench.compare import compare
from workbench.compare import verdict as compare_verdict
from workbench.experiment import Experiment
from workbench.external import ExternalExperiment
from workbench.launcher import ServiceProcess
from workbench.load import SLO, Endpoint, LoadResult, Scenario, run_load
from workbench.notebook import setup, show, summary_table
from workbench.params import Params, check_params, preset_settings
from workbench.run import RunResult
from workbench.stack import Stack
from workbench.store import Store
from workbench.sweep import Sweep

__all__ = [
    "Sweep",
    "advice",
    "capacity",
    "compare_verdict",
    "ladder_climb",
    "params",
    "store",
    "tune",
    "SLO",
    "Bottleneck",
    "Endpoint",
    "Experiment",
    "ExternalExperiment",
    "LoadResult",
    "RunResult",
    "Scenario",
    "Store",
    "attribute",
    "compare",
    "run_load",
    "InputError",
    "Params",
    "ServiceProcess",
    "ServiceSettings",
    "SettingsError",
    "Stack",
    "StackError",
    "check_params",
    "ladder",
    "plots",
    "preset_settings",
    "setup",
    "show",
    "summary_table",
]
