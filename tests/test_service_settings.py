"""ServiceSettings: validation, env round trip, presets and the database connection limit."""

from __future__ import annotations

import pytest

from service.settings import ServiceSettings, SettingsError, ladder


def test_defaults_are_the_naive_preset() -> None:
    assert ServiceSettings.naive() == ServiceSettings()
    assert ServiceSettings.naive().diff() == {}


def test_env_round_trip() -> None:
    settings = ServiceSettings.optimized()
    assert ServiceSettings.from_env(settings.to_env()) == settings


def test_strings_from_env_are_coerced() -> None:
    settings = ServiceSettings.from_env(
        {"SVC_POOL_SIZE": "7", "SVC_CACHE": "on", "SVC_BATCH_FLUSH_INTERVAL": "0.005"}
    )
    assert (settings.pool_size, settings.cache, settings.batch_flush_interval) == (7, True, 0.005)


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"serializer": "msgpack"}, "serializer"),
        ({"upstream_mode": "threads"}, "upstream_mode"),
        ({"pool_size": 0}, "pool_size"),
        ({"pool_size": "many"}, "pool_size"),
        ({"pool_size": 2.5}, "pool_size"),
        ({"cache": "maybe"}, "cache"),
        ({"l1_size": 0}, "l1_size"),
        ({"batch_flush_interval": -0.001}, "batch_flush_interval"),
        ({"batch_size": 100, "batch_max_pending": 10}, "batch_size"),
        ({"max_requests": 10, "max_requests_jitter": 20}, "max_requests_jitter"),
        ({"workers": 2, "preload": True}, "preload"),
        ({"read_autocommit": True}, "read_autocommit"),
        ({"no_such_knob": 1}, "no_such_knob"),
    ],
)
def test_bad_values_are_rejected_naming_the_setting(changes: dict[str, object], name: str) -> None:
    with pytest.raises(SettingsError) as info:
        ServiceSettings.from_dict(changes)
    assert info.value.name == name
    assert str(info.value).startswith(name)


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("pool_timeout", float("nan"), "from 0.001 to 3600"),
        ("pool_timeout", "nan", "from 0.001 to 3600"),
        ("pool_timeout", float("inf"), "from 0.001 to 3600"),
        ("pool_timeout", 86_400, "from 0.001 to 3600"),
        ("upstream_timeout", float("-inf"), "from 0.001 to 3600"),
        ("batch_flush_interval", float("nan"), "from 0 to 60"),
        ("model_cache_ttl", "inf", "from 0 to 604800"),
        ("workers", 10**6, "from 1 to 64"),
        ("workers", float("inf"), "from 1 to 64"),
        ("pool_size", 5000, "from 1 to 1000"),
        ("read_max_overflow", 10**4, "from 0 to 1000"),
        ("backlog", 10**6, "from 1 to 65535"),
        ("l1_size", 10**9, "from 1 to 10000000"),
        ("batch_max_pending", 10**7, "from 1 to 1000000"),
        ("timeout", 10**5, "from 1 to 3600"),
        ("keepalive", "1e9", "from 0 to 3600"),
    ],
)
def test_nan_inf_and_absurd_values_are_rejected_with_the_range(
    name: str, value: object, allowed: str
) -> None:
    with pytest.raises(SettingsError) as info:
        ServiceSettings.from_dict({name: value})
    assert info.value.name == name
    assert str(info.value).startswith(f"{name}: must be ") and allowed in str(info.value)
    with pytest.raises(SettingsError, match=f"SVC_{name.upper()}: .*{allowed}"):
        ServiceSettings.from_env({f"SVC_{name.upper()}": str(value)})


def test_every_numeric_setting_has_bounds_the_presets_keep() -> None:
    numeric = [
        name
        for name, value in ServiceSettings().to_dict().items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    assert len(numeric) == 26
    for name in numeric:
        with pytest.raises(SettingsError, match=f"{name}: must be .* from "):
            ServiceSettings.from_dict({name: 10**12})
    for _, settings in ladder():
        assert ServiceSettings.from_dict(settings.to_dict()) == settings


def test_settings_are_frozen() -> None:
    settings = ServiceSettings()
    with pytest.raises(AttributeError):
        settings.pool_size = 99  # type: ignore[misc]


def test_ladder_adds_one_step_at_a_time() -> None:
    steps = ladder()
    assert [name for name, _ in steps][0] == "naive"
    assert steps[-1][1] == ServiceSettings.optimized()
    previous = steps[0][1]
    for _, settings in steps[1:]:
        assert settings.diff(previous), "every step changes something"
        previous = settings
    optimized = ServiceSettings.optimized()
    assert optimized.cache and optimized.batcher and optimized.serializer == "orjson"
    assert optimized.upstream_mode == "shared" and optimized.workers >= 2


def test_database_limit_counts_every_worker_and_both_pools() -> None:
    settings = ServiceSettings(workers=2, pool_size=10, max_overflow=5, read_split=True)
    assert settings.max_db_connections() == 2 * (15 + 5 + 10)
    settings.check_database_limit(100)
    with pytest.raises(SettingsError, match="max_connections"):
        settings.check_database_limit(60)
