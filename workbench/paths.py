"""Where the project's folders are: data/runs, data/reports, notebooks."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent  # the source tree, when this package runs from one


def project_dir() -> Path:
    """The project folder: WORKBENCH_HOME, else a working folder at cwd, else the checkout, else cwd.

    A working folder holds notebooks/ and data/ (`workbench init` makes one); a kernel runs in
    its notebooks/ folder, so from there the working folder is the parent.
    """
    if env := os.environ.get("WORKBENCH_HOME"):
        return Path(env).resolve()
    cwd = Path.cwd()
    if _is_working_folder(cwd):
        return cwd
    if cwd.name == "notebooks" and _is_working_folder(cwd.parent):
        return cwd.parent
    if (CHECKOUT / "pyproject.toml").exists():
        return CHECKOUT
    return cwd


def _is_working_folder(folder: Path) -> bool:
    return (folder / "notebooks").is_dir() and (folder / "data").is_dir()


def reports_dir() -> Path:
    """data/reports: rendered HTML reports."""
    return project_dir() / "data" / "reports"


def runs_dir() -> Path:
    """data/runs: one folder per run."""
    return project_dir() / "data" / "runs"


def shipped_notebooks() -> Path:
    """The notebooks this installation carries: the checkout's notebooks/, or the wheel's copy."""
    checkout = CHECKOUT / "notebooks"
    return checkout if (CHECKOUT / "pyproject.toml").exists() else PACKAGE / "notebooks"


def notebooks_dir() -> Path:
    """notebooks/ of the project folder when it has one, else the notebooks shipped."""
    working = project_dir() / "notebooks"
    return working if working.is_dir() else shipped_notebooks()
