"""A run in a process of its own, to interrupt from a test: its own embedded stack, store and service.

python -m tests.fault_run STORE_DIR [preset] — prints "measuring" lines as seconds are measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store

CODE = """
from pathlib import Path
from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store

with Stack(users=500, progress=print) as stack:
    Experiment(
        settings=ServiceSettings.{preset}(), connections=4, duration=60, warmup=0.2, processes=1,
        name="interrupted",
    ).run(stack, store=Store(Path({store!r})), progress=True)
"""


def main(store: str, preset: str = "optimized") -> None:
    """Start a stack, then a 60 s run meant to be interrupted."""
    settings = getattr(ServiceSettings, preset)()
    with Stack(users=500, progress=print) as stack:
        Experiment(
            settings=settings, connections=4, duration=60, warmup=0.2, processes=1,
            name="interrupted",
        ).run(stack, store=Store(Path(store)), progress=True)  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
