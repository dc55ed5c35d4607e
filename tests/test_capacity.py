"""Capacity search against the real service: steps up, breaks, bisects, explains."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from service.settings import ServiceSettings
from workbench._errors import InputError
from workbench.capacity import Capacity, bracket, estimate, holds, narrow, search
from workbench.experiment import Session
from workbench.load import SLO
from workbench.stack import Stack
from workbench.store import Store


@pytest.mark.alone
@pytest.mark.slow
def test_search_finds_the_last_rate_that_holds(stack: Stack, tmp_path: Path) -> None:
    with Session() as session:
        found = search(
            stack, settings=ServiceSettings.naive(), slo="p95=20ms", start=200, factor=4,
            tolerance=1.5, duration=1, warmup=0.5, store=Store(tmp_path), progress=False,
            session=session,
        )  # fmt: skip
        assert len(session.generators) >= 1  # the load workers are kept for the caller
    points = found.points
    assert found.max_rate is not None and found.broke_at is not None
    assert found.max_rate < found.broke_at
    assert narrow(found.max_rate, found.broke_at, 1.5)
    assert found.interval() == (found.max_rate, found.broke_at)
    assert estimate([found]) == (found.max_rate, found.max_rate, found.broke_at)
    assert found.held is not None and found.held.summary()["asked_rate"] == found.max_rate
    assert points.loc[points["rate"] == found.max_rate, "ok"].item()
    assert not points.loc[points["rate"] == found.broke_at, "ok"].item()
    assert found.broken and found.bottleneck["kind"] and "Holds the SLO up to" in found.sentence()
    assert len(Store(tmp_path).ids()) == len(points)  # every step is a stored run


@pytest.mark.parametrize("capacity", [100.0, 437.0, 1_000.0, 5_999.0])
def test_bracket_bisects_until_within_tolerance(capacity: float) -> None:
    asked: list[float] = []

    def holds_at(rate: float) -> bool:
        asked.append(rate)
        return rate <= capacity

    good, bad = bracket(holds_at, start=250, limit=50_000, tolerance=0.05)
    assert good is not None and bad is not None
    assert good <= capacity < bad
    assert (bad - good) / good <= 0.05
    assert len(asked) == len(set(asked)) <= 12  # each rate measured once


def test_bracket_stops_at_the_cap_and_at_the_limit() -> None:
    good, bad = bracket(lambda rate: rate <= 1_000, start=250, limit=50_000, max_bisections=1)
    assert (good, bad) == (1_000, 1_500)  # 250, 500, 1000 hold; 2000 breaks; one bisection
    assert bracket(lambda rate: True, start=250, limit=1_000) == (1_000, None)
    assert bracket(lambda rate: False, start=250, limit=1_000) == (None, 250 / 16)


def test_repeated_searches_give_the_median_and_a_bootstrap_interval() -> None:
    def found(rate: float) -> Capacity:
        return Capacity(rate, rate * 1.05, ("p95",), {}, pd.DataFrame())

    rate, low, high = estimate([found(900), found(1_000), found(1_200)], n_boot=500)
    assert rate == 1_000 and low is not None and high is not None
    assert 900 <= low <= rate <= high <= 1_200 and low < high


def test_holds_reads_summary_rows() -> None:
    frame = pd.DataFrame({"p95_ms": [10.0, 60.0], "requests": [100, 100], "errors": [0, 0]})
    assert list(holds(frame, "p95=50ms")) == [True, False]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"start": 0}, "start"),
        ({"factor": 1}, "factor"),
        ({"slo": "p95"}, "slo"),
        ({"tolerance": 0}, "tolerance"),
        ({"max_bisections": -1}, "max_bisections"),
        ({"pth": "/users/{id}"}, "pth"),  # no load field of an Experiment
        ({"connections": 0}, "connections"),
        ({"experiment": "fast"}, "experiment"),
    ],
)
def test_bad_input_is_named(stack: Stack, kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(InputError, match=f"^{name}: "):
        search(stack, settings=ServiceSettings(), **kwargs)  # type: ignore[arg-type]


def test_a_step_broken_only_by_the_generator_is_told_apart() -> None:
    from workbench.capacity import breaks, generator_only
    from workbench.run import RunResult

    def run(**row: object) -> RunResult:
        summary = {"p95_ms": 5.0, "requests": 1000, "errors": 0, "asked_rate": 300.0,
                   "throughput_rps": 300.0, **row}  # fmt: skip
        return RunResult("r", {}, summary, pd.DataFrame(), pd.DataFrame(), b"")

    slo = SLO.parse("p95=50ms")
    lagging = run(generator_saturated=True, saturation_reason="send lag P99 14.8 ms > 10 ms")
    assert generator_only(lagging, slo) and breaks(lagging, slo)  # broken, but not by the service
    slow = run(generator_saturated=True, p95_ms=80.0)
    assert not generator_only(slow, slo)
    assert not generator_only(run(), slo) and not breaks(run(), slo)
