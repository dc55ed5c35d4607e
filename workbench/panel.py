"""Panel: widgets in a notebook to turn a run's knobs, run it, and compare the runs side by side."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from service.settings import ServiceSettings
from workbench.experiment import Session
from workbench.load import Load
from workbench.params import PRESETS, Params, preset_settings
from workbench.run import RunResult

# The settings a panel offers, in the order shown; every other setting follows the preset.
KNOBS = ("pool_size", "max_overflow", "workers", "cache", "batcher", "serializer")
IDS = ("uniform", "zipf", "seed")
SERIALIZERS = ("pydantic", "orjson")
METRICS = ("throughput_rps", "p50_ms", "p95_ms", "p99_ms")


@dataclass(frozen=True)
class Choice:
    """What a panel's widgets say: a preset, its knobs, and the load."""

    preset: str
    knobs: Mapping[str, Any]
    load: Load
    fresh_service: bool = False  # a new service even when the kept one has these settings

    def settings(self, base: ServiceSettings | None = None) -> ServiceSettings:
        """The service's settings: the preset (or base), with the knobs turned."""
        start = base if base is not None else preset_settings(self.preset)
        knobs = dict(self.knobs)
        if knobs.get("workers", 1) > 1 and start.server == "uvicorn" and start.preload:
            knobs["preload"] = False  # uvicorn cannot preload several workers
        return start.replace(**knobs)


def settings_diff(settings: ServiceSettings | Mapping[str, Any]) -> str:
    """The settings that differ from the naive baseline, as `name=value, ...` (or 'naive')."""
    if isinstance(settings, Mapping):
        settings = ServiceSettings(**settings)
    changed = settings.diff(ServiceSettings.naive())
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "naive"


def service_state(run: RunResult) -> str:
    """Whether a run's service was started for it or kept from earlier runs (warm)."""
    service = run.manifest.get("service", {})
    if not service.get("reused"):
        return "new"
    return f"kept (warm, run {len(service.get('runs_before', [])) + 1} on it)"


def comparison(runs: Sequence[RunResult], *, seed: int = 0) -> pd.DataFrame:
    """One row per run: its label, settings against naive, load, and each metric with its 95% CI."""
    from workbench.compare import estimate

    rows = []
    for number, run in enumerate(runs, start=1):
        summary = run.summary()
        profile = run.manifest.get("profile", {})
        rate = profile.get("rate")
        load = (
            f"{rate:,.0f} req/s asked"
            if rate
            else f"closed loop, {profile.get('connections')} conn."
        )
        row: dict[str, Any] = {
            "run": f"#{number}",
            "run_id": run.run_id,
            "settings vs naive": settings_diff(run.manifest.get("settings", {})),
            "load": f"{load}, {profile.get('duration', 0):g} s, ids {profile.get('ids')}",
            "service": service_state(run),
            "errors": summary.get("errors"),
            "bottleneck": summary.get("bottleneck"),
        }
        table = estimate(run, seed=seed)
        for metric in METRICS:
            row[metric] = table.loc[metric, "value"]
            row[f"{metric}_low"] = table.loc[metric, "ci_low"]
            row[f"{metric}_high"] = table.loc[metric, "ci_high"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """A comparison as people read it: each metric with its interval in one cell, rounded."""
    out = frame[["settings vs naive", "load", "service"]].copy()
    for metric, label, digits in (
        ("throughput_rps", "req/s", 0), ("p50_ms", "P50 ms", 2), ("p95_ms", "P95 ms", 2),
        ("p99_ms", "P99 ms", 2),
    ):  # fmt: skip
        out[f"{label} [95% CI]"] = [
            f"{value:,.{digits}f} [{low:,.{digits}f}–{high:,.{digits}f}]"
            for value, low, high in zip(
                frame[metric], frame[f"{metric}_low"], frame[f"{metric}_high"], strict=True
            )
        ]
    out["errors"] = frame["errors"]
    out["bottleneck"] = frame["bottleneck"]
    out["run_id"] = frame["run_id"]
    return out


class Panel:
    """Widgets for the knobs, a Run button, and the runs so far compared (table and chart)."""

    def __init__(
        self,
        params: Params,
        *,
        preset: str = "optimized",
        runs: Sequence[RunResult] = (),
        stack: Callable[[], Any] | None = None,
        session: Session | None = None,
        store: Any = None,
        name: str = "panel",
    ) -> None:
        import ipywidgets as w

        self.params = params
        self.initial_preset = preset
        self.runs: list[RunResult] = list(runs)
        self.name = name
        self._stack = stack  # None: the kernel's kept stack (and its kept session)
        self._session = session  # with `stack`: the session its runs share (None: none)
        self.store = store  # None: data/runs
        settings = params.settings
        style = {"description_width": "110px"}
        layout = w.Layout(width="250px")

        def number(kind: Any, value: Any, low: float, high: float, label: str) -> Any:
            return kind(
                value=value, min=low, max=high, description=label, style=style, layout=layout
            )

        self.preset = w.Dropdown(options=PRESETS, value=preset, description="preset", style=style, layout=layout)  # fmt: skip
        self.knobs: dict[str, Any] = {
            "pool_size": number(w.BoundedIntText, settings.pool_size, 1, 1000, "pool_size"),
            "max_overflow": number(
                w.BoundedIntText, settings.max_overflow, 0, 1000, "max_overflow"
            ),
            "workers": number(w.BoundedIntText, settings.workers, 1, 64, "workers"),
            "cache": w.Checkbox(value=settings.cache, description="cache (L1/L2)", indent=False),
            "batcher": w.Checkbox(value=settings.batcher, description="batcher", indent=False),
            "serializer": w.Dropdown(
                options=SERIALIZERS,
                value=settings.serializer,
                description="serializer",
                style=style,
                layout=layout,
            ),  # fmt: skip
        }
        load = params.load
        self.connections = number(w.BoundedIntText, load.connections, 1, 10_000, "connections")
        self.rate = number(w.BoundedFloatText, load.rate or 0.0, 0, 1e6, "rate (0: closed)")
        self.duration = number(w.BoundedFloatText, load.duration, 0.5, 3600, "duration (s)")
        self.ids = w.Dropdown(options=IDS, value=load.ids, description="ids", style=style, layout=layout)  # fmt: skip
        # Off: a run with the settings of the last run measures its service again (warm).
        self.fresh = w.Checkbox(value=False, description="fresh service", indent=False)
        self.button = w.Button(description="Run", button_style="primary", icon="play")
        self.status = w.HTML()
        self.output = w.Output()  # the running load's live chart
        self.compared = w.Output()  # the comparison table and chart
        self.preset.observe(self._preset_changed, names="value")
        self.button.on_click(lambda _: self.click())
        knobs = w.VBox([self.preset, *self.knobs.values()])
        shape = w.VBox([self.connections, self.rate, self.duration, self.ids, self.fresh])
        self.widget = w.VBox(
            [
                w.HTML("<b>Turn the knobs, press Run: each run is stored and compared below.</b>"),
                w.HBox([knobs, shape]),
                w.HBox([self.button, self.status]),
                self.output,
                self.compared,
            ]
        )
        self._show_comparison()

    def _preset_changed(self, change: Mapping[str, Any]) -> None:
        settings = preset_settings(str(change["new"]))
        for name, widget in self.knobs.items():
            widget.value = getattr(settings, name)

    def choice(self) -> Choice:
        """What the widgets say now."""
        return Choice(
            preset=str(self.preset.value),
            knobs={name: widget.value for name, widget in self.knobs.items()},
            load=self.params.load.replace(
                connections=int(self.connections.value),
                rate=float(self.rate.value) or None,
                duration=float(self.duration.value),
                ids=str(self.ids.value),
            ),
            fresh_service=bool(self.fresh.value),
        )

    def run(self) -> RunResult:
        """Measure what the widgets say (as the Run button does); the run is stored and compared."""
        from workbench import notebook

        chosen = self.choice()
        # The notebook's own overrides (beyond the knobs) hold while its preset is chosen.
        base = self.params.settings if chosen.preset == self.initial_preset else None
        experiment = self.params.experiment(
            settings=chosen.settings(base), load=chosen.load, name=self.name,
            labels={"panel_run": len(self.runs) + 1},
        )  # fmt: skip
        if self._stack is not None:
            run = experiment.run(
                self._stack(), store=self.store, session=self._session, progress=False,
                fresh_service=chosen.fresh_service,
            )  # fmt: skip
        else:
            stack = notebook.kept_stack(
                users=self.params.users, database_url=self.params.database_url,
                redis_url=self.params.redis_url,
            )  # fmt: skip
            run = experiment.run(
                stack, store=self.store, session=notebook.kept_session(), progress=False,
                fresh_service=chosen.fresh_service,
            )  # fmt: skip
        self.runs.append(run)
        self._show_comparison()
        return run

    def click(self) -> None:
        """The Run button: measure, with the live chart in the panel; a failure is one line."""
        from workbench import notebook
        from workbench.load import LoadInterrupted

        self.button.disabled = True
        self.status.value = "running..."
        self.output.clear_output()
        try:
            with self.output:
                run = self.run()
            self.status.value = f"stored as <code>{run.run_id}</code>"
        except LoadInterrupted as exc:
            self.status.value = notebook.interrupt_line(exc)
        except KeyboardInterrupt:
            self.status.value = "interrupted"
        except Exception as exc:  # shown in the panel: a callback's error would go unseen
            self.status.value = f"failed: {type(exc).__name__}: {exc}"
            print(f"panel run failed: {exc!r}", file=sys.stderr)
        finally:
            self.button.disabled = False

    def comparison(self) -> pd.DataFrame:
        """The runs so far, one row each, metrics with their 95% CIs."""
        return comparison(self.runs)

    def _show_comparison(self) -> None:
        from IPython.display import display

        from workbench import notebook, plots

        self.compared.clear_output(wait=True)
        if not self.runs:
            return
        frame = self.comparison()
        with self.compared, pd.option_context("display.max_colwidth", None):
            display(shown(frame))
            notebook.show(plots.runs_side_by_side(frame))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def panel(
    params: Params,
    *,
    preset: str = "optimized",
    runs: Sequence[RunResult] = (),
) -> Panel | None:
    """Knobs and a Run button in JupyterLab; nothing under papermill, where the parameters drive."""
    from workbench import live

    if not live.watched():
        return None
    return Panel(params, preset=preset, runs=runs)
