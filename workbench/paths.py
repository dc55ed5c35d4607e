"""Where the project's folders are: data/runs, data/reports, notebooks."""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    """The project folder (WORKBENCH_HOME, else the checkout this package lives in, else cwd)."""
    if env := os.environ.get("WORKBENCH_HOME"):
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd()


def reports_dir() -> Path:
    """data/reports: rendered HTML reports."""
    return project_dir() / "data" / "reports"


def runs_dir() -> Path:
    """data/runs: one folder per run."""
    return project_dir() / "data" / "runs"


def notebooks_dir() -> Path:
    """notebooks/: the parameterized notebooks of this checkout (WORKBENCH_HOME moves data only)."""
    here = Path(__file__).resolve().parent.parent / "notebooks"
    return here if here.is_dir() else project_dir() / "notebooks"
