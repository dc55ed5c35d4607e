"""Folders and files only we own: another user's folder, a symlink or a planted log are refused."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import pytest

from workbench import _fs, _process, report
from workbench._errors import StackError
from workbench.stack import Stack

from .conftest import descendants

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def _nobody() -> tuple[int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def test_private_dir_is_made_ours_and_tight(tmp_path: Path) -> None:
    folder = _fs.private_dir(tmp_path / "a" / "stack")
    st = os.lstat(folder)
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700
    (tmp_path / "loose").mkdir(mode=0o777)
    os.chmod(tmp_path / "loose", 0o777)
    assert os.lstat(_fs.private_dir(tmp_path / "loose", mode=0o711)).st_mode & 0o777 == 0o711


@needs_root
def test_stack_folder_made_first_by_another_user_is_refused(stack_root: Path) -> None:
    # /var/tmp/fastapi-workbench-<hash> is a predictable name: someone may create it first
    planted = stack_root / "planted"
    planted.mkdir()
    os.chown(planted, *_nobody())
    before = descendants()
    with pytest.raises(StackError, match=rf"{planted} belongs to nobody .*not to root"):
        Stack(users=10, root=planted, progress=lambda _: None).start()
    assert descendants() <= before
    assert list(planted.iterdir()) == []  # nothing written into it


def test_stack_folder_that_is_a_symlink_is_refused(stack_root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = stack_root / "linked"
    link.symlink_to(elsewhere)
    with pytest.raises(StackError, match=rf"{link} is a symbolic link"):
        Stack(users=10, root=link, progress=lambda _: None).start()
    assert list(elsewhere.iterdir()) == []


def test_a_log_planted_as_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    log = tmp_path / "server.log"
    log.symlink_to(target)
    with pytest.raises(OSError):
        _process.spawn(["true"], log=log)
    assert target.read_text() == "keep me\n"


@needs_root
def test_a_log_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("")
    os.chown(log, *_nobody())
    with pytest.raises(StackError, match="belongs to nobody"):
        _process.spawn(["true"], log=log)


@needs_root
def test_jupyter_runtime_folder_made_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    planted = shared / f"runtime-{os.getuid()}"
    planted.mkdir()
    os.chown(planted, *_nobody())
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(shared))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with pytest.raises(StackError, match=rf"{planted} belongs to nobody"):
        report.ensure_kernel()
    assert "XDG_RUNTIME_DIR" not in os.environ


def test_secret_files_are_written_0600_and_read_only_when_private(tmp_path: Path) -> None:
    path = _fs.write_private(tmp_path / "password", "s3cret\n")
    assert os.lstat(path).st_mode & 0o777 == 0o600
    assert _fs.read_private(path) == "s3cret\n"
    os.chmod(path, 0o644)
    with pytest.raises(StackError, match="readable by others"):
        _fs.read_private(path)
