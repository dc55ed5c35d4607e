"""Fault tests' timing: the load's worker started while the service boots, and an outage that
begins a measured second into the run, however long that worker took to start."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from workbench.experiment import Session
from workbench.faults import Outage
from workbench.load import progress
from workbench.stack import Stack


@contextlib.contextmanager
def warm_session() -> Iterator[Session]:
    """A Session whose one load worker starts now, to import while the service under test boots."""
    with Session() as session:
        session.generators.prepare(1)
        yield session


@contextlib.contextmanager
def outage_after_first_second(
    stack: Stack, server: str, *, duration: float, mode: str = "stop"
) -> Iterator[Outage]:
    """An Outage of `server` that begins when the run's first measured second is reported (about
    1 s into the window); leaving the block waits for the server to be back, as Outage does."""
    outage = Outage(stack, server, at=0.0, duration=duration, mode=mode)
    with contextlib.ExitStack() as exits:
        begun: list[Outage] = []

        def hear(event: object) -> bool:
            if isinstance(event, progress.Second) and not begun:
                begun.append(exits.enter_context(outage))
            return False

        exits.enter_context(progress.listening(hear))
        yield outage
