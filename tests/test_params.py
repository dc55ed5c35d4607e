"""Notebook parameters: each bad one is named, with what is allowed."""

from __future__ import annotations

import pytest

from workbench._errors import InputError
from workbench.params import check_params


def test_defaults_pass_and_build_the_preset() -> None:
    params = check_params(preset="naive", settings={"pool_size": 9})
    assert params.settings.pool_size == 9 and params.settings.serializer == "pydantic"


def test_checked_parameters_build_the_run_they_declare() -> None:
    params = check_params(
        duration=2, warmup=0.5, connections=8, rate=50, endpoint="/users/{id}/full"
    )
    experiment = params.experiment(name="n")
    load = experiment.load
    assert load is params.load
    assert (load.path, load.connections, load.duration) == ("/users/{id}/full", 8, 2.0)
    assert load.warmup == 0.5 and check_params().load.warmup == 1.0
    assert load.rate == 50 and experiment.settings == params.settings


@pytest.mark.parametrize(
    ("kwargs", "name", "allowed"),
    [
        ({"connections": -3}, "connections", ">= 1"),
        ({"connections": "many"}, "connections", "integer"),
        ({"duration": 0}, "duration", "> 0"),
        ({"duration": 10_000}, "duration", "<= 3600"),
        ({"warmup": -1}, "warmup", ">= 0"),
        ({"users": 1.5}, "users", "integer"),
        ({"preset": "fast"}, "preset", "naive, optimized"),
        ({"settings": {"serializer": "json"}}, "settings.serializer", "pydantic, orjson"),
        ({"settings": [1]}, "settings", "dict"),
        ({"endpoint": "users"}, "endpoint", "'/'"),
        ({"database_url": "mysql://h/db"}, "database_url", "postgresql://"),
        ({"ids": "zip"}, "ids", "'uniform', 'zipf'"),
        ({"ids": "zipf", "zipf_s": 0}, "zipf_s", "> 0"),
    ],
)
def test_bad_parameter_is_named(kwargs: dict[str, object], name: str, allowed: str) -> None:
    with pytest.raises(InputError) as info:
        check_params(**kwargs)
    assert info.value.name == name
    assert allowed in str(info.value)


def test_a_settings_error_becomes_an_input_error_field_and_reason_kept() -> None:
    """The field and the reason travel as attributes: a reason holding ': ' stays whole."""
    from service.settings import ServiceSettings, SettingsError

    with pytest.raises(SettingsError) as settings_error:
        ServiceSettings(serializer="json: yes")
    assert settings_error.value.name == "serializer"
    with pytest.raises(InputError) as info:
        check_params(settings={"serializer": "json: yes"})
    assert info.value.name == "settings.serializer"
    assert info.value.reason == settings_error.value.reason and "json: yes" in info.value.reason


def test_check_ladder_names_a_bad_repeat_tolerance_or_step() -> None:
    from workbench.params import check_ladder

    assert check_ladder(repeats=2, tolerance=0.1, steps=["+pool", "naive"]) == ["naive", "+pool"]
    for kwargs, name in (({"repeats": 0}, "repeats"), ({"tolerance": 0}, "tolerance"),
                         ({"steps": ["+turbo"]}, "steps"), ({"steps": "naive"}, "steps")):  # fmt: skip
        with pytest.raises(InputError, match=f"^{name}: "):
            check_ladder(**kwargs)
