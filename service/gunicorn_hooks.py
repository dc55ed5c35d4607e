"""Gunicorn hooks: tell the Prometheus multiprocess collector when a worker dies."""

from __future__ import annotations

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """Mark a dead worker's live gauges as gone."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
