"""The tuning workbench for FastAPI services: launch the service, load it, look inside, plot."""

from service.settings import ServiceSettings, SettingsError, ladder
from workbench import plots
from workbench._errors import InputError, StackError
from workbench.bottleneck import Bottleneck, attribute
from workbench.compare import compare
from workbench.experiment import Experiment
from workbench.external import ExternalExperiment
from workbench.launcher import ServiceProcess
from workbench.load import SLO, Endpoint, LoadResult, Scenario, run_load
from workbench.notebook import setup, show, summary_table
from workbench.params import Params, check_params, preset_settings
from workbench.run import RunResult
from workbench.stack import Stack
from workbench.store import Store

__all__ = [
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
