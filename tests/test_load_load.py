"""Load: the load declared once, relative to its target, and bound to a URL by LoadPlan.build."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from workbench._errors import InputError
from workbench.load import Load, LoadPlan, LoadProfile, Scenario


def test_a_load_is_its_profile_plus_requests_and_generators() -> None:
    load = Load(path="/items/{id}", connections=8, rate=200, duration=2, ids="zipf", processes=2)
    assert isinstance(load, LoadProfile) and load.open_loop
    assert load.profile() == LoadProfile(connections=8, rate=200, duration=2)
    requests = load.requests(id_max=500, seed=7)
    assert [e.path for e in requests.endpoints] == ["/items/{id}"]
    assert (requests.ids, requests.id_max, requests.seed) == ("zipf", 500, 7)
    assert Load(id_max=30).requests(id_max=500).id_max == 30  # the load's own range wins


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"connections": 0}, "connections"),
        ({"duration": -1}, "duration"),
        ({"rate": -5}, "rate"),
        ({"arrival": "burst"}, "arrival"),
        ({"path": "users"}, "path"),
        ({"processes": 0}, "processes"),
        ({"ids": "pareto"}, "ids"),
        ({"ids": "zipf", "zipf_s": 0}, "zipf_s"),
        ({"id_max": 0}, "id_max"),
        ({"seed": "x"}, "seed"),
        ({"scenario": 3}, "scenario"),
    ],
)
def test_bad_field_is_named(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(InputError, match=f"^{name}: "):
        Load(**kwargs)  # type: ignore[arg-type]


def test_replace_names_a_keyword_that_is_no_load_field() -> None:
    load = Load(connections=4)
    assert load.replace(rate=50) == Load(connections=4, rate=50)
    with pytest.raises(InputError, match="^pool_size: is no load option; the load's are "):
        load.replace(pool_size=5)
    with pytest.raises(InputError, match="^rate: "):
        load.replace(rate=0)  # replaced values are checked too


def test_a_run_draws_its_seed_once_and_records_it() -> None:
    fixed = Load(seed=11)
    assert fixed.seeded() is fixed
    drawn = Load().seeded()
    assert isinstance(drawn.seed, int) and drawn.to_dict()["seed"] == drawn.seed
    assert drawn.requests(id_max=10).seed == drawn.seed
    assert len({Load().seeded().seed for _ in range(5)}) > 1  # fresh per run, not replayed


def test_bound_to_a_base_url_its_path_goes_after_it_and_the_target_gives_the_id_range() -> None:
    load = Load(path="/users/{id}", connections=4, processes=1)
    plan = LoadPlan.build("http://127.0.0.1:9", load, id_max=2_000, progress=False)
    assert plan.url == "http://127.0.0.1:9/users/{id}" and plan.base_url == "http://127.0.0.1:9"
    assert [e.path for e in plan.scenario.endpoints] == ["/users/{id}"]
    assert plan.scenario.id_max == 2_000 and plan.profile == load.profile()
    prefixed = LoadPlan.build("http://127.0.0.1:9/api/", load, connections=2)
    assert [e.path for e in prefixed.scenario.endpoints] == ["/api/users/{id}"]
    assert prefixed.profile.connections == 2  # keywords over the load's fields


def test_a_whole_url_with_keywords_is_the_same_plan_as_a_load() -> None:
    by_keywords = LoadPlan.build(
        "http://127.0.0.1:9/items/{id}", connections=4, rate=10, processes=1, seed=3, id_max=9
    )
    by_load = LoadPlan.build(
        "http://127.0.0.1:9", Load(path="/items/{id}", connections=4, rate=10, processes=1, seed=3),
        id_max=9,
    )  # fmt: skip
    assert by_keywords == by_load
    with pytest.raises(InputError, match="^path: "):
        LoadPlan.build("http://127.0.0.1:9/items", path="/other")
    with pytest.raises(InputError, match="^load: "):
        LoadPlan.build("http://127.0.0.1:9", {"connections": 4})  # type: ignore[arg-type]


def test_a_scenario_file_replaces_path_and_ids(tmp_path: Path) -> None:
    file = tmp_path / "mix.json"
    file.write_text(json.dumps({"endpoints": [{"path": "/a"}, {"path": "/b/{id}"}], "seed": 5}))
    load = Load(scenario=file)  # type: ignore[arg-type]
    assert isinstance(load.scenario, Scenario) and load.seeded() is load
    assert [e.path for e in load.requests(id_max=10).endpoints] == ["/a", "/b/{id}"]
    assert load.to_dict()["scenario"] == ["/a", "/b/{id}"]


def test_the_manifest_profile_keeps_its_keys() -> None:
    """A sweep's id hashes this dict: fields left at their defaults add no key."""
    assert Load(rate=100, seed=1).to_dict() == {
        "path": "/users/{id}", "connections": 64, "duration": 5.0, "rate": 100.0,
        "arrival": "constant", "warmup": 1.0, "processes": None, "ids": "uniform",
        "zipf_s": None, "seed": 1,
    }  # fmt: skip
    assert Load(stages=((1, 10),), id_max=5).to_dict()["stages"] == [[1.0, 10.0]]


def test_the_load_shape_is_declared_once() -> None:
    """What holds a load holds a Load: no profile field repeated as a field of its own."""
    from workbench.experiment import Experiment
    from workbench.external import ExternalExperiment
    from workbench.panel import Choice
    from workbench.params import Params

    shape = {f.name for f in dataclasses.fields(LoadProfile)} | {"path", "ids", "processes"}
    for holder in (Experiment, ExternalExperiment, Params, Choice):
        names = {f.name for f in dataclasses.fields(holder)}
        assert "load" in names and not names & shape, holder
