"""A run in a process of its own, to interrupt from a test: its own embedded stack, store and service.

python -m tests.fault_run STORE_DIR [preset] | python -m tests.fault_run sweep STORE_DIR — prints "measuring" lines as seconds are measured.
python -m tests.fault_run save-killed STORE_DIR USERS — the same sweep, SIGKILLed inside Store.save.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import HDR_LATENCY, Store

# An open loop at a modest rate: what these tests interrupt and count needs requests in flight,
# not a saturated machine (a closed loop would keep both cores busy for the whole run).
RATE = 200
CODE = f"""
from pathlib import Path
from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store

with Stack(users=500, progress=print) as stack:
    Experiment(
        settings=ServiceSettings.{{preset}}(), connections=4, rate={RATE}, duration=60, warmup=0.2,
        processes=1, name="interrupted",
    ).run(stack, store=Store(Path({{store!r}})), progress=True)
"""


def main(store: str, preset: str = "optimized") -> None:
    """Start a stack, then a 60 s run meant to be interrupted."""
    settings = getattr(ServiceSettings, preset)()
    with Stack(users=500, progress=print) as stack:
        Experiment(
            settings=settings, connections=4, rate=RATE, duration=60, warmup=0.2, processes=1,
            name="interrupted",
        ).run(stack, store=Store(Path(store)), progress=True)  # fmt: skip


def sweep_main(store: str) -> None:
    """A three-point sweep on a stack of its own, meant to be killed in its second point."""
    with Stack(users=500, progress=print) as stack:
        sweep().run(stack, store=Store(Path(store)), progress=True)


def sweep_killed_in_save(store: str, users: str) -> None:
    """sweep() on the stack of the environment, SIGKILLed inside Store.save of its first point:
    the run's first files are written, its latency histogram is about to be."""

    def kill_at_the_histogram(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args and isinstance(args[0], str | os.PathLike):
            path = Path(os.fspath(args[0]))
            if path.name == HDR_LATENCY and path.parent.name.startswith(".tmp-"):
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(kill_at_the_histogram)
    with Stack(users=int(users), progress=print) as stack:
        sweep().run(stack, store=Store(Path(store)), progress=True)


def sweep() -> Any:
    """The sweep of sweep_main (the test resumes the same one)."""
    from workbench.sweep import Sweep

    base = Experiment(
        settings=ServiceSettings(serializer="orjson"), connections=4, rate=100, duration=1,
        warmup=0.2, processes=1,
    )  # fmt: skip
    return Sweep({"pool_size": [3, 4, 5]}, base=base, name="killed")


if __name__ == "__main__":
    if sys.argv[1] == "sweep":
        sweep_main(sys.argv[2])
    elif sys.argv[1] == "save-killed":
        sweep_killed_in_save(sys.argv[2], sys.argv[3])
    else:
        main(*sys.argv[1:])
