"""The tuning workbench for FastAPI services: launch the service, load it, look inside, plot."""

# Names load on first use (PEP 562): a load-generator worker process or `workbench --help`
# imports only what it needs, not pandas, plotly and optuna.
from __future__ import annotations

import importlib
from typing import Any

from workbench._deferred import defer_iri_checker

# Every process that imports the workbench (CLI, kernels, cluster agents) imports papermill
# ~1 s faster: jsonschema's IRI parsers are built only if an "iri" format is ever checked.
defer_iri_checker()

_NAMES: dict[str, tuple[str, str | None]] = {
    "ServiceSettings": ("service.settings", "ServiceSettings"),
    "SettingsError": ("service.settings", "SettingsError"),
    "ladder": ("service.settings", "ladder"),
    "InputError": ("workbench._errors", "InputError"),
    "StackError": ("workbench._errors", "StackError"),
    "Bottleneck": ("workbench.bottleneck", "Bottleneck"),
    "attribute": ("workbench.bottleneck", "attribute"),
    "ladder_climb": ("workbench.climb", "climb"),
    "compare": ("workbench.compare", "compare"),
    "Projection": ("workbench.cost", "Projection"),
    "compare_verdict": ("workbench.compare", "verdict"),
    "Experiment": ("workbench.experiment", "Experiment"),
    "ExternalExperiment": ("workbench.external", "ExternalExperiment"),
    "ServiceProcess": ("workbench.launcher", "ServiceProcess"),
    "SLO": ("workbench.load", "SLO"),
    "Endpoint": ("workbench.load", "Endpoint"),
    "Load": ("workbench.load", "Load"),
    "LoadPlan": ("workbench.load", "LoadPlan"),
    "LoadResult": ("workbench.load", "LoadResult"),
    "Scenario": ("workbench.load", "Scenario"),
    "run_load": ("workbench.load", "run_load"),
    "setup": ("workbench.notebook", "setup"),
    "show": ("workbench.notebook", "show"),
    "summary_table": ("workbench.notebook", "summary_table"),
    "cost_table": ("workbench.notebook", "cost_table"),
    "cost_section": ("workbench.notebook", "cost_section"),
    "settings_table": ("workbench.notebook", "settings_table"),
    "kept_stack": ("workbench.notebook", "kept_stack"),
    "kept_session": ("workbench.notebook", "kept_session"),
    "stop": ("workbench.notebook", "stop"),
    "panel": ("workbench.panel", "panel"),
    "Params": ("workbench.params", "Params"),
    "check_params": ("workbench.params", "check_params"),
    "preset_settings": ("workbench.params", "preset_settings"),
    "RunResult": ("workbench.run", "RunResult"),
    "Stack": ("workbench.stack", "Stack"),
    "Store": ("workbench.store", "Store"),
    "Sweep": ("workbench.sweep", "Sweep"),
    # modules
    "advice": ("workbench.advice", None),
    "live": ("workbench.live", None),
    "anatomy": ("workbench.anatomy", None),
    "capacity": ("workbench.capacity", None),
    "climb": ("workbench.climb", None),
    "cost": ("workbench.cost", None),
    "params": ("workbench.params", None),
    "plots": ("workbench.plots", None),
    "store": ("workbench.store", None),
    "tune": ("workbench.tune", None),
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    module_name, attr = _NAMES[name]
    importlib.import_module("workbench._quiet")
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES])
