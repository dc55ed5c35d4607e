"""Gunicorn hooks of the service: a dead worker's gauges, the master's light exit."""

from __future__ import annotations

import gc

from service import gunicorn_hooks


def test_the_master_exits_with_its_heap_frozen() -> None:
    """The last full collection of the interpreter's exit then skips the preloaded app."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        gunicorn_hooks.on_exit(object())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
