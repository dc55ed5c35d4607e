"""The upstream of /users/{id}/profile hanging or down: each call is bounded by the timeout, the
errors are classed (504 timeout, 502 connection), nothing queues without bound, then recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.launcher import ServiceProcess
from workbench.monitor import parse_metrics
from workbench.stack import Stack
from workbench.store import Store

from ._fault_window import outage_after_first_second, warm_session
from .conftest import descendants

pytestmark = [
    pytest.mark.slow,
    pytest.mark.window,
]  # the end-to-end tier: `make test-fast` skips it

RATE = 100
TIMEOUT = 0.3
DURATION = 5


@pytest.mark.parametrize(("mode", "kind"), [("freeze", "timeout"), ("stop", "connection")])
def test_upstream_outage_is_bounded_and_classed(
    stack: Stack, tmp_path: Path, mode: str, kind: str
) -> None:
    before = descendants()
    settings = ServiceSettings(
        serializer="orjson", upstream_mode="shared", upstream_timeout=TIMEOUT,
        upstream_max_connections=10,
    )  # fmt: skip
    experiment = Experiment(
        settings=settings, path="/users/{id}/profile", rate=RATE, connections=64,
        duration=DURATION, warmup=0.5, processes=1, name=f"upstream {mode}",
    )  # fmt: skip
    store = Store(tmp_path)
    with warm_session() as session, ServiceProcess(settings, stack) as service:
        # about seconds 1-3: second 2 inside the outage, seconds 4 on after it
        with outage_after_first_second(stack, "upstream", duration=2.0, mode=mode) as outage:
            run = experiment.run(
                stack, store=store, service=service, session=session, progress=False
            )
        errors = parse_metrics(service.metrics())
    assert descendants() - set(stack.pids().values()) <= before
    down, up = outage.seconds(run.manifest["window_started_at"])
    frame = run.to_frame().set_index("second")
    print(f"upstream {mode} {down:.2f}-{up:.2f} s\n" + frame[
        ["sent", "completed", "errors", "status_5xx", "p99_ms", "in_flight"]
    ].to_string())  # fmt: skip
    assert down > 0 and up < DURATION - 0.5, (down, up)
    assert run.status == "finished"
    # errors are counted when they arrive: a timeout TIMEOUT after its request
    inside = frame[(frame.index >= down + TIMEOUT) & (frame.index + 1 <= up)]
    after = frame.loc[int(up + TIMEOUT) + 1 :]
    assert not inside.empty and (inside["errors"] > 0.8 * inside["sent"]).all()
    assert not after.empty and (after["errors"] == 0).all(), frame.to_string()
    # every error is the service's answer (502/504), none a dropped or hung client request
    assert frame["status_5xx"].sum() == frame["errors"].sum() > 0
    assert errors.get(f"upstream_errors_total{{kind={kind}}}", 0) > 0
    # bounded: no request waits much longer than the upstream timeout, so nothing piles up
    assert (inside["p99_ms"] < 1000 * TIMEOUT + 500).all(), frame.to_string()  # + shared-CPU lag
    assert frame["in_flight"].max() < RATE * TIMEOUT * 2 + 5
