"""ServiceSettings: validation, env round trip, presets and the ladder."""

from __future__ import annotations

import pytest

from service.settings import ServiceSettings, SettingsError, ladder


def test_defaults_are_sqlalchemy_defaults_and_naive() -> None:
    naive = ServiceSettings.naive()
    assert (naive.pool_size, naive.max_overflow) == (5, 10)
    assert naive.serializer == "pydantic" and naive.upstream_mode == "blocking"
    assert not naive.cache and not naive.batcher and naive.workers == 1


def test_env_round_trip_keeps_every_value() -> None:
    settings = ServiceSettings.optimized().replace(pool_size=33, batch_flush_interval=0.05)
    assert ServiceSettings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"serializer": "json"}, "serializer"),
        ({"batch_size": 0}, "batch_size"),
        ({"pool_size": "many"}, "pool_size"),
        ({"workers": 1.5}, "workers"),
        ({"cache": "maybe"}, "cache"),
        ({"pool_sise": 3}, "pool_sise"),
    ],
)
def test_bad_values_name_the_setting(changes: dict[str, object], name: str) -> None:
    with pytest.raises(SettingsError) as info:
        ServiceSettings.from_dict(changes)
    assert info.value.name == name
    assert str(info.value).startswith(f"{name}: ")


def test_unknown_setting_lists_valid_names() -> None:
    with pytest.raises(SettingsError, match="valid names are: pool_size"):
        ServiceSettings.from_dict({"nope": 1})


def test_bad_serializer_lists_allowed_values() -> None:
    with pytest.raises(SettingsError, match="pydantic, orjson"):
        ServiceSettings(serializer="json")


def test_env_strings_are_converted() -> None:
    settings = ServiceSettings.from_env({"SVC_POOL_SIZE": "40", "SVC_CACHE": "true"})
    assert settings.pool_size == 40 and settings.cache is True


def test_database_limit_counts_all_workers_and_engines() -> None:
    settings = ServiceSettings(pool_size=50, max_overflow=50, workers=4)
    assert settings.max_db_connections() == 400
    with pytest.raises(SettingsError, match="exceeds the database's max_connections"):
        settings.check_database_limit(100)
    ServiceSettings().check_database_limit(100)


def test_ladder_adds_one_step_at_a_time() -> None:
    steps = ladder()
    assert [name for name, _ in steps] == [
        "naive", "+pool", "+serialization", "+async", "+cache", "+workers",
    ]  # fmt: skip
    assert steps[0][1] == ServiceSettings.naive()
    assert steps[-1][1] == ServiceSettings.optimized()
    for (_, before), (_, after) in zip(steps, steps[1:], strict=False):
        assert before.diff(after)  # every step changes something
        assert after.diff(before).keys() == before.diff(after).keys()
