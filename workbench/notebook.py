"""What a notebook kernel holds: figures that render in JupyterLab and in offline reports, a stack
and a service kept up between cells, and a one-line answer to an interrupt."""

from __future__ import annotations

import atexit
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from workbench.experiment import Session

if TYPE_CHECKING:
    from service.settings import ServiceSettings
    from workbench.launcher import ServiceProcess
    from workbench.stack import Stack

_MIME_PLOTLY = "application/vnd.plotly.v1+json"
COST_INTRO = (
    "CPU milliseconds each component spent per request in the measured window (warm-up "
    "excluded), from the processes' own CPU counters; the generator is the client side. The "
    "projection says what rate these costs would allow on a bigger machine or a fleet, if "
    "throughput were CPU-bound."
)
PROJECTED_CORES = 8  # the account's 8 workers


def setup() -> None:
    """Prepare a notebook: live charts of loads, short interrupts (reports add plotly.js)."""
    from IPython import get_ipython

    from workbench import live

    # plotly.js (~5 MB) is not embedded here, in every executed notebook: report.to_html adds
    # it once to the HTML it renders, so reports still draw offline.
    live.install()
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((KeyboardInterrupt,), _interrupted)


def _interrupted(
    shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None
) -> None:
    """An interrupt in a cell: one line naming what was stored, not a traceback."""
    print(interrupt_line(value), flush=True)


def interrupt_line(exc: BaseException) -> str:
    """One line for an interrupted load: how much was measured and where it was stored."""
    from workbench.load import LoadInterrupted

    if not isinstance(exc, LoadInterrupted):
        return "interrupted"
    measured = exc.result.duration_s if exc.result is not None else 0.0
    if exc.run_id:
        return f"interrupted after {measured:g} s measured; partial run stored as {exc.run_id}"
    return f"interrupted after {measured:g} s measured (a bare load: nothing stored)"


class KeptSession(Session):
    """The kernel's Session: besides the load workers, the last finished run's service stays up,
    and the next run with the same settings on the same stack measures it again (warm: its
    manifest says so); other settings, or `fresh`, stop it and start a new one.

    keep_service=False: every run's service stops after it, as in any Session.
    """

    def __init__(self, *, keep_service: bool = True) -> None:
        super().__init__()
        self.keep_service = keep_service
        self.service: ServiceProcess | None = None

    def service_for(
        self, settings: ServiceSettings, stack: Stack, *, fresh: bool = False
    ) -> ServiceProcess | None:
        """The kept service when it fits (same settings and stack, answering), else None."""
        kept, self.service = self.service, None
        if kept is None:
            return None
        if not fresh and kept.settings == settings and kept.stack is stack and kept.healthy():
            return kept
        self.stop_later(kept)  # the next load waits until it is gone (settle)
        return None

    def release(self, service: ServiceProcess) -> None:
        """Keep a finished run's service for the next run."""
        if self.service is not None and self.service is not service:
            self.stop_later(self.service)
        if self.keep_service:
            self.service = service
        else:
            self.service = None
            self.stop_later(service)

    def close(self) -> None:
        """Stop the kept service, wait for the ones stopping, stop the load workers."""
        kept, self.service = self.service, None
        if kept is not None:
            self.stop_later(kept)
        super().close()


@dataclass
class _Kept:
    """The kernel's stack and session (load workers, kept service), and what they are for."""

    key: tuple[Any, ...]
    stack: Stack
    session: KeptSession


_KEPT: _Kept | None = None
_STOP_AT_EXIT = False


def kept_stack(
    *, users: int | None = None, database_url: str | None = None, redis_url: str | None = None
) -> Stack:
    """The kernel's stack: started by the first call, kept up for the next cells and runs.

    A call asking for other users or other servers stops the kept stack and starts that one; a
    kept stack whose servers stopped answering is started again. stop(), or the kernel's exit,
    stops it.
    """
    from workbench import live
    from workbench._errors import StackError
    from workbench.stack import DEFAULT_USERS, Stack, stack_dir

    global _KEPT, _STOP_AT_EXIT
    key = (users or DEFAULT_USERS, database_url or None, redis_url or None, str(stack_dir()))
    if _KEPT is not None and _KEPT.key == key:
        try:
            _KEPT.stack.check()
            return _KEPT.stack
        except StackError as exc:
            print(f"the kept stack stopped answering ({exc}); starting it again")
    stop()
    if not _STOP_AT_EXIT:
        atexit.register(stop)  # the kernel's shutdown stops what it kept
        _STOP_AT_EXIT = True
    started = Stack(users=key[0], database_url=key[1], redis_url=key[2]).start()
    # The service is kept for a person's reruns (JupyterLab); under papermill each run gets its
    # own, so that a sweep's points on one warm kernel are measured alike, each on a new service.
    _KEPT = _Kept(key=key, stack=started, session=KeptSession(keep_service=live.watched()))
    return started


def kept_session() -> KeptSession:
    """The kernel's Session (load workers and the last service kept between runs), beside its
    kept_stack(); `experiment.run(stack, session=..., fresh_service=True)` starts a new service."""
    if _KEPT is None:
        raise RuntimeError("no kept stack: call wb.kept_stack(...) first")
    return _KEPT.session


def stop() -> None:
    """Stop the kernel's kept stack, its services and load workers (nothing when none runs)."""
    global _KEPT
    kept, _KEPT = _KEPT, None
    if kept is not None:
        try:
            kept.session.close()
        finally:
            kept.stack.stop()


def settings_table(settings: Any) -> pd.DataFrame:
    """The settings that differ from the naive baseline, beside the baseline's value."""
    from service.settings import ServiceSettings

    naive = ServiceSettings.naive()
    changed = settings.diff(naive)
    if not changed:
        return pd.DataFrame(
            {"naive": ["-"], "this run": ["the naive baseline"]},
            index=pd.Index(["(no setting differs)"], name="setting"),
        )
    return pd.DataFrame(
        {
            "naive": [getattr(naive, k) for k in changed],
            "this run": list(changed.values()),
        },
        index=pd.Index(list(changed), name="setting"),
    ).astype(str)


def show(fig: go.Figure) -> None:
    """Display fig as plotly JSON (JupyterLab) and as HTML (reports)."""
    from IPython.display import display

    html = fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False})
    display({_MIME_PLOTLY: json.loads(fig.to_json()), "text/html": html}, raw=True)


def summary_table(run: Any) -> pd.DataFrame:
    """The headline numbers of a run as a small table (for notebooks and reports)."""
    row = run.summary()
    keys = [
        ("throughput_rps", "throughput (req/s)"),
        ("requests", "requests"),
        ("errors", "errors"),
        ("p50_ms", "latency P50 (ms)"),
        ("p95_ms", "latency P95 (ms)"),
        ("p99_ms", "latency P99 (ms)"),
        ("p999_ms", "latency P99.9 (ms)"),
        ("max_ms", "latency max (ms)"),
        ("generator_saturated", "generator saturated"),
        ("bottleneck", "bottleneck"),
    ]
    return pd.DataFrame(
        {"value": [row.get(k) for k, _ in keys]}, index=pd.Index([label for _, label in keys])
    )


def cost_table(run: Any) -> pd.DataFrame:
    """A run's cost per request: CPU ms and share of the server side's CPU, one row a component."""
    from workbench.cost import LABELS

    ms = run.cpu_ms_per_request()
    server = ms.get("server", float("nan"))
    rows = {LABELS[name]: value for name, value in ms.items()}
    share = [
        value / server if name not in ("server", "generator") and server > 0 else float("nan")
        for name, value in ms.items()
    ]
    return pd.DataFrame(
        {"CPU ms per request": list(rows.values()), "share of server CPU": share},
        index=pd.Index(list(rows), name="component"),
    ).round(3)


def cost_section(run: Any, *, cores: int = PROJECTED_CORES) -> None:
    """A run's cost per request in a notebook: what it means, the projection, the table, the chart."""
    from IPython.display import Markdown, display

    from workbench import plots

    display(Markdown(COST_INTRO))
    print(run.projection(cores=cores).sentence())
    display(cost_table(run))
    show(plots.cpu_per_request({run.run_id: run.cpu_ms_per_request()}))
