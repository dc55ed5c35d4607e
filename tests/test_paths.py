"""Which project folder and notebooks a command uses: WORKBENCH_HOME, a working folder, the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.paths import CHECKOUT, notebooks_dir, project_dir, runs_dir, shipped_notebooks


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd in an empty folder outside the checkout, no WORKBENCH_HOME."""
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_outside_a_working_folder_the_checkout_is_the_project(elsewhere: Path) -> None:
    assert project_dir() == CHECKOUT
    assert notebooks_dir() == shipped_notebooks() == CHECKOUT / "notebooks"


def test_a_folder_with_notebooks_and_data_is_the_project(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (elsewhere / "notebooks").mkdir()
    assert project_dir() == CHECKOUT  # notebooks/ alone is not a working folder
    (elsewhere / "data").mkdir()
    assert project_dir() == elsewhere and runs_dir() == elsewhere / "data" / "runs"
    assert notebooks_dir() == elsewhere / "notebooks"
    monkeypatch.chdir(elsewhere / "notebooks")  # where a kernel runs
    assert project_dir() == elsewhere


def test_workbench_home_wins_and_brings_its_notebooks_when_it_has_them(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = elsewhere / "home"
    home.mkdir()
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    assert project_dir() == home and notebooks_dir() == CHECKOUT / "notebooks"
    (home / "notebooks").mkdir()
    assert notebooks_dir() == home / "notebooks"
