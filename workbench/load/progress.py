"""Progress: who hears of a running load's measured seconds (and of runs starting) as they happen."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# A listener gets every event published in this process and returns True when it showed it to
# the user (a notebook's live chart): the per-second text line is then left out.
Listener = Callable[[object], bool]

_LISTENERS: list[Listener] = []
# Where a load's per-second text lines go (when no listener showed the second): None, stdout.
_LINES: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Second:
    """One measured second of a running load, merged across its workers."""

    index: int  # 0 for the first measured second
    duration: float  # the load's measured seconds, as planned
    row: Mapping[str, Any]  # the per-second row: rate, errors, p50_ms, p95_ms, p99_ms, asked_rate
    # The load's numbers over the seconds measured so far: measured_s, rate, errors, p99_ms
    # (over the whole run when the last second arrives).
    so_far: Mapping[str, Any] = field(default_factory=dict)


def add(listener: Listener) -> None:
    """Hear every event from now on (once, however often added)."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def remove(listener: Listener) -> None:
    """Stop hearing events."""
    with contextlib.suppress(ValueError):
        _LISTENERS.remove(listener)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Hear events while inside the block."""
    add(listener)
    try:
        yield
    finally:
        remove(listener)


def lines_to(sink: Callable[[str], None] | None) -> None:
    """Send the per-second text lines to sink from now on (None: stdout, as in a terminal)."""
    global _LINES
    _LINES = sink


def say(line: str) -> None:
    """Show one per-second text line where lines_to() sends them."""
    if _LINES is None:
        print(line, flush=True)
    else:
        _LINES(line)


def publish(event: object) -> bool:
    """Tell every listener; True when one of them showed the event.

    A listener that fails is dropped with one line on stderr: a view never stops a load.
    """
    shown = False
    for listener in list(_LISTENERS):
        try:
            shown = bool(listener(event)) or shown
        except Exception as exc:
            remove(listener)
            print(f"progress view {listener!r} failed and was removed: {exc!r}", file=sys.stderr)
    return shown
