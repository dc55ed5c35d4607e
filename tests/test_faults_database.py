"""PostgreSQL stopped for 2 s in the middle of a run: the run finishes, the errors are classed per
second, the series shows the outage and the recovery, the service recovers without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.faults import frozen
from workbench.launcher import ServiceProcess
from workbench.stack import Stack
from workbench.store import Store

from ._fault_window import outage_after_first_second, warm_session
from .conftest import descendants

pytestmark = [
    pytest.mark.slow,
    pytest.mark.window,
]  # the end-to-end tier: `make test-fast` skips it

RATE = 200
DURATION = 5


def test_database_outage_is_survived_classed_and_stored(stack: Stack, tmp_path: Path) -> None:
    store = Store(tmp_path)
    before = descendants()
    settings = ServiceSettings(serializer="orjson", pool_pre_ping=True, pool_timeout=2)
    experiment = Experiment(
        settings=settings, rate=RATE, connections=64, duration=DURATION, warmup=0.5, processes=1,
        name="db outage",
    )  # fmt: skip
    with warm_session() as session, ServiceProcess(settings, stack) as service:
        pid = service.pids()[0]
        # the outage covers about seconds 1-3: second 2 inside it, seconds 4 on after it
        with outage_after_first_second(stack, "postgres", duration=2.0) as outage:
            run = experiment.run(
                stack, store=store, service=service, session=session, progress=False
            )
        assert service.pids()[0] == pid  # recovered without a restart
        health = httpx.get(service.url + "/health", timeout=5)
        assert health.status_code == 200, (health.text, run.series().to_string())
        assert httpx.get(service.url + "/users/7", timeout=5).status_code == 200
    assert descendants() <= before
    assert run.status == "finished"
    down, up = outage.seconds(run.manifest["window_started_at"])
    assert down > 0 and up < DURATION - 0.5, (down, up)
    series = run.series().set_index("second")
    print(
        f"outage {down:.2f}-{up:.2f} s\n"
        + series[["sent", "completed", "errors", "status_5xx", "reset", "p99_ms"]].to_string()
    )
    during = series.loc[int(down) + 1 : int(up) - 1] if up - down >= 2 else series.loc[[int(down)]]
    after = series.loc[int(up) + 1 :]
    assert (during["errors"] > 0.5 * during["sent"]).all(), series.to_string()
    assert not after.empty and (after["errors"] == 0).all(), series.to_string()
    assert (after["completed"] > 0.8 * RATE).all(), series.to_string()
    # classed: the service answered (5xx) rather than dropping connections
    summary = run.summary()
    assert summary["errors"] == series["errors"].sum() > 0
    assert series["status_5xx"].sum() == series["errors"].sum(), series.to_string()
    stored = store.load(run.run_id)
    assert stored.status == "finished" and stored.summary()["errors"] == summary["errors"]
    assert list(stored.series()["status_5xx"]) == list(series["status_5xx"])


FROZEN_RATE = 40
QUERY_TIMEOUT = 0.5


def test_frozen_database_answers_503_within_the_query_timeout(stack: Stack, tmp_path: Path) -> None:
    """PostgreSQL SIGSTOPped (it keeps its sockets, answers nothing): requests end in 503 after
    query_timeout instead of hanging, the run is stored, and the server is resumed."""
    store = Store(tmp_path)
    settings = ServiceSettings(
        serializer="orjson", query_timeout=QUERY_TIMEOUT, pool_timeout=QUERY_TIMEOUT
    )
    experiment = Experiment(
        settings=settings, rate=FROZEN_RATE, connections=64, duration=5, warmup=0.5,
        processes=1, name="db frozen",
    )  # fmt: skip
    postgres = psutil.Process(stack.pids()["postgres"])
    with warm_session() as session, ServiceProcess(settings, stack) as service:
        with outage_after_first_second(stack, "postgres", duration=2.0, mode="freeze") as outage:
            run = experiment.run(
                stack, store=store, service=service, session=session, progress=False
            )
        assert postgres.status() != psutil.STATUS_STOPPED  # resumed
        assert httpx.get(service.url + "/users/7", timeout=5).status_code == 200
        with frozen(stack, "postgres"):  # one request, seen up close: a 503, not a 500
            started = time.monotonic()
            answer = httpx.get(service.url + "/users/8", timeout=10)
            took = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"detail": "database unavailable: TimeoutError"}
        assert took < QUERY_TIMEOUT + 1.0, took
        assert httpx.get(service.url + "/users/8", timeout=5).status_code == 200
    down, up = outage.seconds(run.manifest["window_started_at"])
    series = run.series().set_index("second")
    print(f"frozen {down:.2f}-{up:.2f} s\n" + series[
        ["sent", "completed", "errors", "status_5xx", "timeout", "p99_ms"]
    ].to_string())  # fmt: skip
    assert run.status == "finished" and store.load(run.run_id).status == "finished"
    assert down > 0 and up < 4, (down, up)  # a second or more measured after the thaw
    during = series.loc[int(down) + 1 : int(up) - 1] if up - down >= 2 else series.loc[[int(down)]]
    assert (during["status_5xx"] > 0).all(), series.to_string()
    assert series["timeout"].sum() == 0  # the service answered; no client gave up
    # each request waited at most pool_timeout + query_timeout, far less than the freeze
    assert series["p99_ms"].max() < 1000 * (up - down) * 0.75, series.to_string()
    after = series.loc[int(up) + 1 :]
    assert not after.empty and (after["errors"] == 0).all(), series.to_string()
