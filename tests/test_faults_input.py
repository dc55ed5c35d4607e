"""Bad input wherever it enters gets one clear message naming it and what is allowed, before any
process starts: CLI flags, notebook parameters, settings dicts, SVC_* and URL variables, URLs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from service.settings import ServiceSettings, SettingsError
from workbench import cli
from workbench._errors import InputError
from workbench.experiment import Experiment
from workbench.faults import Outage
from workbench.load import run_load
from workbench.params import preset_settings
from workbench.paths import project_dir
from workbench.stack import Stack

from .conftest import descendants


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["report", "01_quickstart", "-p", "duration", "-3"], "duration"),
        (["report", "01_quickstart", "-p", "users", '"many"'], "users"),
        (["report", "01_quickstart", "-p", "preset", '"turbo"'], "preset"),
        (["serve", "--set", "pool_size=0"], "settings.pool_size"),
        (["serve", "--set", "pool_sise=5"], "settings.pool_sise"),
        (["serve", "--set", "workers"], "--set"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--users", "0"], "users"),
        (["stack", "up", "--users", "-5"], "users"),
        (["load", "http://127.0.0.1:9/", "--connections", "many"], "connections"),
        (["load", "http://127.0.0.1:9/", "--rate", "-10"], "rate"),
        (["load", "ftp://127.0.0.1/x"], "url"),
        (["load", "http://192.0.2.1/"], "url"),  # not loopback, no --allow-remote
    ],
)
def test_cli_names_the_bad_input_and_starts_nothing(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = descendants()
    started = time.monotonic()
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert f"{named}: " in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert descendants() <= before and time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("values", "named", "allowed"),
    [
        ({"pool_size": "five"}, "pool_size", "integer"),
        ({"serializer": "json"}, "serializer", "pydantic, orjson"),
        ({"pool_sise": 5}, "pool_sise", "valid names are"),
        ({"cache": "maybe"}, "cache", "true or false"),
        ({"batch_size": 100, "batch_max_pending": 10}, "batch_size", "<= batch_max_pending"),
    ],
)
def test_settings_dicts_name_the_setting_and_what_is_allowed(
    values: dict[str, Any], named: str, allowed: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{named}: .*{allowed}"):
        ServiceSettings.from_dict(values)
    with pytest.raises(InputError, match=f"^settings.{named}: "):
        preset_settings("optimized", values)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SVC_POOL_SIZE": "abc"}, "SVC_POOL_SIZE"),
        ({"SVC_SERVER": "hypercorn"}, "SVC_SERVER"),
        ({"DATABASE_URL": "mysql://127.0.0.1/x"}, "DATABASE_URL"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL"),
        ({"UPSTREAM_URL": "ftp://x"}, "UPSTREAM_URL"),
        ({"PORT": "http"}, "PORT"),
    ],
)
def test_service_environment_is_checked_before_it_serves(env: dict[str, str], named: str) -> None:
    base = {
        **os.environ,
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/postgres",
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "PORT": "9",
    }
    done = subprocess.run(
        [sys.executable, "-m", "service"], env={**base, **env}, cwd=project_dir(),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert err[-1].startswith(f"service: error: {named}: "), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"), ({"REDIS_URL": "http://x"}, "REDIS_URL")],
)
def test_stack_names_the_environment_variable(
    env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = descendants()
    with pytest.raises(InputError, match=f"^{named}: must be a URL like"):
        Stack()
    assert descendants() <= before


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"url": "http://192.0.2.1/"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://127.0.0.1:9/", "connections": -1}, "connections"),
        ({"url": "http://127.0.0.1:9/", "duration": float("nan")}, "duration"),
        ({"url": "http://127.0.0.1:9/", "allow_remote": "yes"}, "allow_remote"),
        ({"url": "http://127.0.0.1:9/", "transport": "curl"}, "transport"),
    ],
)
def test_load_engine_names_bad_options_and_refuses_remote_targets(
    kwargs: dict[str, Any], named: str
) -> None:
    before = descendants()
    with pytest.raises(InputError, match=f"^{named}: "):
        run_load(**kwargs)
    assert descendants() <= before


def test_experiment_and_outage_name_bad_options(stack: Stack) -> None:
    with pytest.raises(InputError, match="^duration: "):
        Experiment(duration=0)
    with pytest.raises(InputError, match="^server: must be one of"):
        Outage(stack, "mysql", at=1, duration=1)
    with pytest.raises(InputError, match="^mode: must be one of"):
        Outage(stack, "redis", at=1, duration=1, mode="pause")
    with pytest.raises(InputError, match="^duration: "):
        Outage(stack, "redis", at=1, duration=-1)
