"""Pool advice: Little's law on the measured hold time, capped by max_connections."""

from __future__ import annotations

import pandas as pd
import pytest

from service.settings import ServiceSettings
from workbench._errors import InputError
from workbench.advice import advise
from workbench.run import RunResult


def run_with(server: dict[str, list[float]], *, workers: int = 1, rps: float = 1000.0) -> RunResult:
    return RunResult(
        run_id="r",
        manifest={"settings": ServiceSettings(workers=workers).to_dict()},
        summary_row={"throughput_rps": rps},
        client=pd.DataFrame(),
        server=pd.DataFrame(server),
        hdr_latency=b"",
    )


def test_littles_law_sizes_the_pool() -> None:
    run = run_with({"checkouts_per_s": [1000.0, 1000.0], "hold_ms": [10.0, 10.0]})
    advice = advise(run, max_connections=100)
    assert advice.busy_connections == pytest.approx(10.0)
    assert (advice.pool_size, advice.max_overflow) == (10, 5)  # 10 busy, x1.5 for bursts
    assert not advice.capped and "Little's law" in advice.sentence()


def test_target_rate_and_workers_scale_the_advice() -> None:
    run = run_with({"checkouts_per_s": [1000.0], "hold_ms": [10.0]})
    advice = advise(run, max_connections=100, workers=2, target_rps=4000)
    assert advice.busy_connections == pytest.approx(40.0)
    assert advice.pool_size == 20  # per worker


def test_advice_stays_under_max_connections() -> None:
    run = run_with({"checkouts_per_s": [5000.0], "hold_ms": [20.0]}, workers=4)
    advice = advise(run, max_connections=43)
    assert advice.capped
    assert advice.workers * (advice.pool_size + advice.max_overflow) <= 43 - 3
    advice.settings(ServiceSettings(workers=4)).check_database_limit(43)


def test_a_run_without_checkouts_is_refused() -> None:
    with pytest.raises(InputError, match="^run: "):
        advise(run_with({"checkouts_per_s": [0.0], "hold_ms": [0.0]}), max_connections=100)
