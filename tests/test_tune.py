"""Auto-tuning: an Optuna study over real runs; bad search spaces are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import ServiceSettings
from workbench._errors import InputError
from workbench.stack import Stack
from workbench.store import Store
from workbench.tune import check_space, tune


@pytest.mark.slow
def test_study_runs_trials_and_confirms_the_best(stack: Stack, tmp_path: Path) -> None:
    store = Store(tmp_path)
    tuning = tune(
        stack, base=ServiceSettings(serializer="orjson"), space={"pool_size": ("int", 2, 10)},
        trials=2, connections=4, duration=1, warmup=0.3, slo="p95=500ms", store=store, progress=False,
    )  # fmt: skip
    assert len(tuning.trials) == 2
    assert 2 <= tuning.best.pool_size <= 10 and tuning.best.serializer == "orjson"
    assert tuning.best_value > 0 and tuning.confirm is not None
    assert len(store.ids()) == 3  # two trials and the confirmation
    assert "Best of 2 trials" in tuning.sentence()


@pytest.mark.parametrize(
    ("space", "name"),
    [
        ({}, "space"),
        ({"pool_sise": ("int", 1, 2)}, "pool_sise"),
        ({"pool_size": ("int", 5, 1)}, "pool_size"),
    ],
)
def test_bad_space_is_named(space: dict, name: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError) as info:
        check_space(space)
    assert info.value.name == name
