"""Secrets: one function masks URL passwords; a notebook and a sweep on a database with a password
write it nowhere under data/ and print it nowhere."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from workbench._secrets import hide, reveal, with_password
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store
from workbench.sweep import Sweep

ROOT = Path(__file__).resolve().parent.parent
SECRET = "S3cretPassw0rdXyz"


def test_hidden_urls_are_revealed_only_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown, real = hide({"database_url": "postgresql://u:pw@h/db", "duration": 1})
    assert shown == {"database_url": "postgresql://u:***@h/db", "duration": 1}
    assert reveal(str(shown["database_url"])) == "postgresql://u:***@h/db"
    import json

    monkeypatch.setenv("WORKBENCH_SECRET_URLS", json.dumps(real))
    assert reveal(str(shown["database_url"])) == "postgresql://u:pw@h/db"
    assert with_password("postgresql://u:***@h/db", "a/b") == "postgresql://u:a%2Fb@h/db"


@pytest.fixture(scope="module")
def secret_url(stack: Stack) -> str:
    """A real PostgreSQL role with the password SECRET on the test stack."""

    async def create() -> None:
        conn = await asyncpg.connect(stack.url)
        try:
            await conn.execute("DROP ROLE IF EXISTS wb_secret_user")
            await conn.execute(f"CREATE ROLE wb_secret_user LOGIN SUPERUSER PASSWORD '{SECRET}'")
        finally:
            await conn.close()

    asyncio.run(create())
    port = stack.url.rsplit(":", 1)[1].split("/")[0]
    return f"postgresql://wb_secret_user:{SECRET}@127.0.0.1:{port}/postgres"


def _files_with(folder: Path, needles: list[str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {n[:4]}…" for n in needles if n.encode() in data]
    return found


@pytest.mark.slow
def test_a_notebook_on_a_database_with_a_password_writes_it_nowhere(
    stack: Stack, secret_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "WORKBENCH_HOME": str(home), "UPSTREAM_URL": str(stack.upstream_url)}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    argv = [
        sys.executable, "-m", "workbench.cli", "report", "01_quickstart",
        "-p", "database_url", secret_url, "-p", "redis_url", stack.redis,
        "-p", "duration", "1", "-p", "warmup", "0.5", "-p", "connections", "4", "-p", "rate", "100",
        "-p", "users", str(stack.users),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    stack_password = stack.redis.split(":")[2].split("@")[0]
    needles = [SECRET, stack_password]
    assert not [n for n in needles if n in done.stdout + done.stderr]
    assert (home / "data" / "reports" / "01_quickstart.html").exists()
    assert list((home / "data" / "runs").iterdir())  # a run was stored
    assert _files_with(home / "data", needles) == []
    executed = (home / "data" / "reports" / "01_quickstart.ipynb").read_text()
    assert "wb_secret_user:***@" in executed  # the parameter is there, masked


@pytest.mark.slow
def test_an_in_process_sweep_with_database_url_writes_it_nowhere(
    stack: Stack,
    secret_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", secret_url)
    monkeypatch.setenv("REDIS_URL", stack.redis)
    monkeypatch.setenv("UPSTREAM_URL", str(stack.upstream_url))
    data = tmp_path / "data"
    attached = Stack(users=stack.users)
    assert attached.database_url == secret_url
    with attached:
        sweep = Sweep(
            {"pool_size": [5]}, base=Experiment(connections=4, rate=100, duration=1, warmup=0.2)
        )
        sweep.run(attached, store=Store(data / "runs"), progress=True)
    out, err = capfd.readouterr()
    stack_password = stack.redis.split(":")[2].split("@")[0]
    assert SECRET not in out + err and stack_password not in out + err
    assert list((data / "runs").iterdir())
    assert _files_with(data, [SECRET, stack_password]) == []


def test_a_bad_url_is_named_without_its_password() -> None:
    from workbench._errors import InputError

    with pytest.raises(InputError) as info:
        Stack(database_url=f"mysql://user:{SECRET}@127.0.0.1/db")
    assert info.value.name == "database_url"
    assert SECRET not in str(info.value) and "user:***@" in str(info.value)
