"""What every part of a driver reads: the state the driver sets up (annotations only)."""

from __future__ import annotations

import asyncio
import multiprocessing.connection

from workbench.load._plan import WorkerSpec
from workbench.load._profile import LoadProfile


class DriverState:
    """The driver's state shared by its parts (its per-second rows, its warm-up windows)."""

    spec: WorkerSpec
    profile: LoadProfile
    pipe: multiprocessing.connection.Connection
    loop: asyncio.AbstractEventLoop
    done: bool
    open_loop: bool
    m_start: float
    tick_handle: asyncio.TimerHandle
