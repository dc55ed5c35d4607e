"""Load profiles: arrival schedules, stages, validation."""

from __future__ import annotations

import statistics

import pytest

from workbench._errors import InputError
from workbench.load import LoadProfile, Stage


def test_constant_arrivals_are_evenly_spaced_across_workers() -> None:
    profile = LoadProfile(rate=100, duration=2, warmup=0.5)
    one = list(profile.arrivals())
    assert len(one) == 250
    assert one[0] == pytest.approx(-0.5)
    both = sorted(
        list(profile.arrivals(worker=0, workers=2)) + list(profile.arrivals(worker=1, workers=2))
    )
    gaps = [b - a for a, b in zip(both, both[1:], strict=False)]
    assert len(both) == pytest.approx(250, abs=2)
    assert max(gaps) == pytest.approx(0.01, abs=1e-6)
    assert min(gaps) == pytest.approx(0.01, abs=1e-6)


def test_poisson_arrivals_have_the_asked_mean_rate() -> None:
    profile = LoadProfile(rate=1000, duration=5, warmup=0, arrival="poisson")
    times = list(profile.arrivals(seed=3))
    assert len(times) == pytest.approx(5000, rel=0.05)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert statistics.pstdev(gaps) == pytest.approx(0.001, rel=0.1)  # exponential: sd == mean


def test_stages_ramp_linearly() -> None:
    profile = LoadProfile(stages=((2, 100), Stage(2, 100), (1, 0)), warmup=1)
    assert profile.open_loop
    assert profile.duration == 5
    assert profile.rate_at(1) == pytest.approx(50)
    assert profile.rate_at(3) == pytest.approx(100)
    assert profile.rate_at(4.5) == pytest.approx(50)
    assert profile.rate_at(-0.5) == 100  # warm-up at the first target
    assert profile.expected_requests() == pytest.approx(100 + 200 + 50)
    measured = [t for t in profile.arrivals() if t >= 0]
    assert len(measured) == pytest.approx(350, rel=0.05)


def test_closed_loop_profile() -> None:
    profile = LoadProfile(connections=8, think_time=0.1)
    assert not profile.open_loop
    assert profile.asked_rate is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"connections": 0}, "connections"),
        ({"duration": 0}, "duration"),
        ({"rate": -1}, "rate"),
        ({"arrival": "burst"}, "arrival"),
        ({"warmup": -0.1}, "warmup"),
        ({"rate": 10, "think_time": 1}, "think_time"),
        ({"stages": ((0, 10),)}, "stages[0].duration"),
        ({"stages": ((1, 0),)}, "stages"),
        ({"stages": "fast"}, "stages"),
    ],
)
def test_validation_names_the_parameter(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(InputError) as info:
        LoadProfile(**kwargs)  # type: ignore[arg-type]
    assert info.value.name == name
