"""The tuning workbench for FastAPI services: launch the service, load it, look inside, plot."""

from service.settings import ServiceSettings, SettingsError, ladder
from workbench import plots
from workbench._errors import InputError, StackError
from workbench.launcher import ServiceProcess
from workbench.notebook import setup, show
from workbench.params import Params, check_params, preset_settings
from workbench.quickload import QuickResult, quick_load
from workbench.stack import Stack

__all__ = [
    "InputError",
    "Params",
    "QuickResult",
    "ServiceProcess",
    "ServiceSettings",
    "SettingsError",
    "Stack",
    "StackError",
    "check_params",
    "ladder",
    "plots",
    "preset_settings",
    "quick_load",
    "setup",
    "show",
]
