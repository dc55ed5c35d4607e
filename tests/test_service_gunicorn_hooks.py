"""Gunicorn hooks of the service: workers fork ready, a dead worker's gauges, the light exit."""

from __future__ import annotations

import gc
import subprocess
import sys

from service import gunicorn_hooks

# The master, ready: then what each worker's uvicorn imports after the fork (both worker classes).
_WORKER_IMPORTS = """
import sys
from service import gunicorn_hooks
from service.worker import StampingWorker
from uvicorn import Config
from uvicorn_worker import UvicornWorker

gunicorn_hooks.when_ready(None)
before = set(sys.modules)

async def app(scope, receive, send):
    pass

for kwargs in (StampingWorker.CONFIG_KWARGS, UvicornWorker.CONFIG_KWARGS):
    config = Config(app, **kwargs)
    config.load()
    config.get_loop_factory()
print(sorted(set(sys.modules) - before))
"""


def test_workers_fork_with_what_their_uvicorn_imports_already_imported() -> None:
    """Each worker's Config.load() imported websockets, uvloop, the lifespan: ~25 ms of CPU."""
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_IMPORTS], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_master_exits_with_its_heap_frozen() -> None:
    """The last full collection of the interpreter's exit then skips the preloaded app."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        gunicorn_hooks.on_exit(object())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
