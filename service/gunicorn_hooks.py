"""Gunicorn hooks: workers fork with uvicorn's modules, dead workers' gauges go, the exit is light."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# gunicorn 27's control socket has one path per user (~/.gunicorn/gunicorn.ctl): every service
# the workbench starts would share it, and the first to stop deletes it. Older versions ignore this.
control_socket_disable = True

# A worker that has loaded the app leaves READY_PREFIX<pid> in the metrics folder (not a .db file:
# Prometheus reads none of it): a launcher counts them, since /health answers from the first.
READY_PREFIX = "worker-ready-"


def when_ready(server: Any) -> None:
    """Import in the master what each worker's uvicorn would import for itself after the fork.

    uvicorn's Config.load() imports its WebSocket protocol (websockets), lifespan and event-loop
    (uvloop) modules in every worker, ~25 ms of CPU each; imported here, workers fork with them.
    """
    import uvicorn.lifespan.on  # noqa: F401
    import uvicorn.loops.auto  # noqa: F401
    import uvicorn.loops.uvloop  # noqa: F401
    import uvicorn.protocols.http.auto  # noqa: F401
    import uvicorn.protocols.websockets.auto  # noqa: F401


def post_worker_init(worker: Any) -> None:
    """Say that this worker has loaded the app (a file in the metrics folder)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder, f"{READY_PREFIX}{os.getpid()}").touch()


def child_exit(server: Any, worker: Any) -> None:
    """Mark a dead worker's live gauges as gone."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Freeze the master's heap as it exits: the interpreter's last full collection then skips
    the preloaded app's objects (0.3-0.4 s of CPU on every stop, beside the next service's boot)."""
    import gc

    gc.freeze()
