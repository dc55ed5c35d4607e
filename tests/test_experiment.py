"""Experiment: a real run of the real service, stored, with server series joined on time."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import ServiceSettings
from workbench import plots
from workbench._errors import InputError
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store

from .conftest import descendants, empty_cache


@pytest.mark.slow
def test_run_is_measured_sampled_attributed_and_stored(stack: Stack, tmp_path: Path) -> None:
    store = Store(tmp_path)
    before = descendants()
    experiment = Experiment(
        settings=ServiceSettings(serializer="orjson"), connections=8, duration=2, warmup=0.5,
        name="exp test", labels={"point": 1},
    )  # fmt: skip
    run = experiment.run(stack, store=store, progress=False)
    assert descendants() <= before  # service and load workers are gone
    summary = run.summary()
    assert summary["status"] == "finished" and summary["errors"] == 0
    assert summary["requests"] > 100 and summary["point"] == 1
    assert summary["serializer"] == "orjson" and summary["bottleneck"]
    # closed loop against the service: the generator waits for it, and says so
    assert not summary["generator_saturated"], summary["saturation_reason"]
    assert (run.to_frame()["generator_busy_pct"] < 90).all()
    frame = run.to_frame()
    assert list(frame["second"]) == [0, 1]
    assert frame["service_cpu_pct"].notna().all() and (frame["server_rps"] > 0).all()
    # the server saw about what the client sent, second by second
    assert abs(frame["server_rps"].sum() - frame["rate"].sum()) < 0.35 * frame["rate"].sum()
    stored = store.load(run.run_id)
    assert stored.summary()["requests"] == summary["requests"]
    assert (store.path(run.run_id) / "service.log").exists()
    manifest = stored.manifest
    assert manifest["environment"]["cpu_count"] >= 1 and manifest["bottleneck"]["sentence"]
    assert store.runs()["run_id"].tolist() == [run.run_id]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"connections": 0}, "connections"), ({"path": "users"}, "path"), ({"rate": -5}, "rate")],
)
def test_bad_input_is_named(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(InputError, match=f"^{name}: "):
        Experiment(**kwargs)  # type: ignore[arg-type]


def test_the_load_is_one_field_its_fields_also_given_by_keyword() -> None:
    from dataclasses import replace

    from workbench.load import Load

    load = Load(connections=4, duration=1, rate=20)
    assert Experiment(load=load) == Experiment(connections=4, duration=1, rate=20)
    assert Experiment(load=load, rate=40).load == load.replace(rate=40)  # keywords over load
    assert replace(Experiment(load=load), name="n").load is load
    with pytest.raises(InputError, match="^load: "):
        Experiment(load={"connections": 4})  # type: ignore[arg-type]


def test_a_study_load_is_the_experiments_or_the_given_or_the_default() -> None:
    from workbench.experiment import study_load
    from workbench.load import Load

    default, given = Load(connections=256), Load(connections=8)
    assert study_load(None, None, default, {"rate": 5}).load == default.replace(rate=5)
    assert study_load(None, given, default, {}).load == given
    point = Experiment(name="p", labels={"a": 1}, connections=2)
    assert study_load(point, None, default, {"duration": 2}) == Experiment(
        name="p", labels={"a": 1}, connections=2, duration=2
    )
    with pytest.raises(InputError, match="^load: "):
        study_load(point, given, default, {})
    with pytest.raises(InputError, match="^pool_size: is no load option"):
        study_load(None, None, default, {"pool_size": 5})


@pytest.mark.alone
@pytest.mark.slow
def test_cost_per_request_by_component(stack: Stack, tmp_path: Path) -> None:
    store = Store(tmp_path)
    runs = {}
    for cache in (False, True):
        # l1_size 1: nearly every lookup goes on to Redis when the cache is on; from an empty L2,
        # so that its misses reach PostgreSQL (with every user cached by earlier tests of the
        # session, the run sent it no query and its CPU read 0.0)
        empty_cache(stack)
        settings = ServiceSettings(serializer="orjson", cache=cache, l1_size=1)
        experiment = Experiment(settings=settings, connections=8, duration=1.5, warmup=0.5)
        runs[cache] = experiment.run(stack, store=store, progress=False)
    cost = {cache: run.cpu_ms_per_request() for cache, run in runs.items()}
    for ms in cost.values():
        assert ms["service"] > 0 and ms["postgres"] > 0 and ms["generator"] > 0
        server = ("service", "postgres", "redis", "upstream")
        assert ms["server"] == pytest.approx(sum(ms.get(name, 0.0) for name in server))
    share = {cache: ms["redis"] / ms["server"] for cache, ms in cost.items()}
    assert share[True] > 2 * share[False]
    summary = store.load(runs[True].run_id).summary()
    assert summary["cpu_ms_per_request_redis"] == cost[True]["redis"]
    # the store's summary frame (settings columns included) plots as is, one bar per run
    fig = plots.cpu_per_request(store.runs().set_index("run_id"))
    assert [t.name for t in fig.data][:3] == ["service", "PostgreSQL", "Redis"]
    assert sorted(fig.data[0].x) == sorted(run.run_id for run in runs.values())
    projection = runs[True].projection(cores=8)
    assert projection.rate_rps == pytest.approx(8000 / cost[True]["server"])
    assert projection.measured_cores == runs[True].manifest["environment"]["cpu_count"]
