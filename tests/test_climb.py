"""The ladder climbed: interleaved rounds, medians with bootstrap intervals, mechanisms from anatomy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from workbench._errors import InputError
from workbench.climb import anatomies, choose_steps, climb, mechanism, records, shown, table
from workbench.stack import Stack
from workbench.store import Store


def anatomy(**stages: tuple[float, float]) -> pd.DataFrame:
    """An anatomy frame from stage=(mean_ms, p95_ms)."""
    frame = pd.DataFrame(
        {"mean_ms": [m for m, _ in stages.values()], "p95_ms": [p for _, p in stages.values()]},
        index=list(stages),
    )
    frame["p50_ms"] = frame["mean_ms"]
    frame["share"] = frame["mean_ms"] / frame["mean_ms"].sum()
    return frame


def measured(
    capacities: dict[str, list[float]], frames: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Rows as climb.measure gives them: one per round and step."""
    rows = []
    for step, values in capacities.items():
        for round_, value in enumerate(values, start=1):
            rows.append(
                {
                    "round": round_, "step": step, "capacity_rps": value, "broke_at": value * 1.05,
                    "bottleneck": "cpu", "p95_ms": 10.0 + round_, "p99_ms": 20.0,
                    "anatomy": (frames or {}).get(step, pd.DataFrame()),
                    "cpu_ms_per_request": {"service": 1.0 * round_}, "fixed_run_id": f"{step}-{round_}",
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_table_gives_medians_inside_their_intervals() -> None:
    found = table(measured({"naive": [400, 500, 450], "+pool": [800, 1000, 900]}), n_boot=500)
    for column in ("capacity_ci_low", "capacity_ci_high", "ratio_ci_low", "ratio_ci_high",
                   "p95_ms", "published_rps", "published_ratio", "bottleneck", "anatomy_ms",
                   "cpu_ms_per_request", "mechanism"):  # fmt: skip
        assert column in found
    assert list(found["step"]) == ["naive", "+pool"]
    assert (found["capacity_ci_low"] <= found["capacity_rps"]).all()
    assert (found["capacity_rps"] <= found["capacity_ci_high"]).all()
    assert found["capacity_rps"].tolist() == [450, 900]
    assert found["ratio_to_naive"].tolist() == [1.0, 2.0]
    assert found["p95_ms"].tolist() == [12.0, 12.0]
    assert found["cpu_ms_per_request"].iloc[0] == {"service": 2.0}  # mean over the repeats
    assert found["published_ratio"].tolist() == [1.0, 1.6]


def test_ratio_interval_pairs_the_rounds() -> None:
    # Every round both steps drift alike: +pool is exactly 2x naive within each round, so the
    # paired interval is [2, 2]; resampling the steps independently would give a wide one.
    found = table(measured({"naive": [200, 400, 600], "+pool": [400, 800, 1200]}), n_boot=500)
    row = found.set_index("step").loc["+pool"]
    assert row["ratio_ci_low"] == pytest.approx(2.0) and row["ratio_ci_high"] == pytest.approx(2.0)
    assert row["capacity_ci_low"] < row["capacity_ci_high"]


def test_one_round_gives_each_search_its_bisection_bracket() -> None:
    found = table(measured({"naive": [400], "+pool": [800]}), n_boot=200).set_index("step")
    assert found.loc["naive", ["capacity_ci_low", "capacity_ci_high"]].tolist() == [400, 420]
    assert found.loc["+pool", ["capacity_ci_low", "capacity_ci_high"]].tolist() == [800, 840]
    # the ratio spans the ends of both brackets: 800 / 420 .. 840 / 400
    assert found.loc["+pool", "ratio_ci_low"] == pytest.approx(800 / 420)
    assert found.loc["+pool", "ratio_ci_high"] == pytest.approx(840 / 400)


@pytest.mark.parametrize("rounds", [1, 3])
def test_a_base_that_held_no_rate_gives_no_ratio_rather_than_failing(rounds: int) -> None:
    # on a loaded machine naive can break at the lowest rate searched: capacity 0
    found = table(measured({"naive": [0] * rounds, "+pool": [800] * rounds}), n_boot=200)
    row = found.set_index("step").loc["+pool"]
    assert row["capacity_rps"] == 800
    assert row["ratio_to_naive"] != row["ratio_to_naive"]  # NaN


def test_mechanism_names_the_stage_that_moved_most() -> None:
    before = anatomy(pool=(90.0, 180.0), query=(1.0, 2.0))
    after = anatomy(pool=(1.0, 2.0), query=(1.1, 2.1))
    assert (
        mechanism("+pool", before, after)
        == "+pool: pool checkout wait 90 → 1.0 ms per request (P95 180 → 2.0 ms); "
        "service time 91 → 2.1 ms"
    )
    # a stage that appears (the batcher turned on) moves from 0
    appeared = anatomy(query=(1.0, 2.0), batcher=(2.6, 4.0))
    assert "batcher wait 0.00 → 2.6 ms" in mechanism("+batch", before.drop("pool"), appeared)


def test_mechanism_says_when_nothing_moved_beyond_noise() -> None:
    before = anatomy(query=(1.0, 2.0), serialize=(0.50, 0.8))
    after = anatomy(query=(1.05, 2.0), serialize=(0.45, 0.8))
    assert mechanism("+x", before, after) == "+x: no stage changed beyond noise"
    bigger = anatomy(query=(3.0, 5.0), serialize=(0.5, 0.8))
    assert "query" in mechanism("+x", before, bigger)
    # ...unless the repeats themselves spread that much
    assert "no stage" in mechanism("+x", before, bigger, noise_ms={"query": 2.5})
    assert mechanism("+x", before, pd.DataFrame()) == "+x: no anatomy measured"


def test_table_builds_mechanisms_from_consecutive_steps() -> None:
    frames = {"naive": anatomy(pool=(50.0, 120.0)), "+pool": anatomy(pool=(0.5, 1.0))}
    found = table(measured({"naive": [400, 500], "+pool": [800, 900]}, frames), n_boot=200)
    assert found["mechanism"].tolist() == [
        "naive: the baseline", "+pool: pool checkout wait 50 → 0.50 ms per request (P95 120 → 1.0 ms); "
        "service time 50 → 0.50 ms",
    ]  # fmt: skip
    assert found["anatomy_ms"].iloc[1] == {"pool": 0.5}
    assert list(anatomies(found)) == ["naive", "+pool"]
    assert anatomies(found)["+pool"].loc["pool", "p95_ms"] == 1.0
    assert records(found)[1]["ratio_ci"] == [found["ratio_ci_low"][1], found["ratio_ci_high"][1]]
    assert list(shown(found)["step"]) == ["naive", "+pool"]


def test_unknown_step_is_named() -> None:
    with pytest.raises(InputError, match="^steps: unknown step '\\+turbo'"):
        choose_steps(["naive", "+turbo"])


@pytest.mark.slow
def test_climb_interleaves_rounds_on_the_real_service(stack: Stack, tmp_path: Path) -> None:
    store = Store(tmp_path)
    found = climb(
        stack, steps=["naive", "+pool"], repeats=2, duration=1, warmup=0.2, fixed_rate=100,
        slo="p95=500ms,errors=5%", start=100, limit=100, store=store, progress=False,
    )  # fmt: skip
    assert list(found["step"]) == ["naive", "+pool"]
    assert (found["capacity_ci_low"] <= found["capacity_rps"]).all()
    assert (found["capacity_rps"] <= found["capacity_ci_high"]).all()
    assert (found["repeats"] == 2).all() and found["p95_ms"].notna().all()
    runs = [store.load(run_id) for run_id in store.ids()]
    runs.sort(key=lambda run: run.manifest["started_at"])
    order = []
    for run in runs:
        key = (run.manifest["labels"]["ladder_round"], run.manifest["labels"]["ladder_step"])
        if not order or order[-1] != key:
            order.append(key)
    assert order == [(1, "naive"), (1, "+pool"), (2, "naive"), (2, "+pool")]


def test_mechanism_tells_the_cpu_each_request_costs() -> None:
    found = table(measured({"naive": [400], "+pool": [800]}), n_boot=100).set_index("step")
    # the synthetic rows have no server column: nothing is claimed
    assert "CPU" not in found.loc["+pool", "mechanism"]
    from workbench.climb import cpu_change

    text = cpu_change({"server": 2.2, "service": 1.9}, {"server": 1.1, "service": 0.8})
    assert text == "; server CPU 2.2 → 1.1 ms per request (service 1.9 → 0.80)"
    assert cpu_change({}, {"server": 1.0}) == ""
