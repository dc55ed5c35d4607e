"""The local runner: generator processes on this machine (a reusable pool), started and merged."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

from workbench._aio import close_loop
from workbench._errors import InputError, positive_int
from workbench.load._collector import _Collector
from workbench.load._driver import READY_TIMEOUT_S, _Driver
from workbench.load._plan import (
    DEADLINE_MARGIN_S,
    MAX_DRAIN_S,
    MAX_PROCESSES,
    LoadPlan,
    WorkerSpec,
    _say,
    worker_specs,
)
from workbench.load._result import LoadFailed, LoadInterrupted, LoadResult, WarmupEnd
from workbench.load._warmup import SteadyWarmup

# Between the parent's start and the workers' first requests: every worker hears it first. With a
# warm-up, a worker that hears it late only warms up shorter, so the delay can be short.
START_DELAY_S = 0.1
WARM_START_DELAY_S = 0.02
IDLE_TIMEOUT_S = 5.0  # how long a pooled worker may take to close its connections after a run


def _worker_main(spec: WorkerSpec | None, pipe: multiprocessing.connection.Connection) -> None:
    """Entry point of a worker process: run the driver on a fresh uvloop loop.

    A pooled worker (spec None) imports everything first, then runs one spec after another as
    ("spec", spec) messages come, answering ("idle", index, None) after each; it exits on EOF.
    """
    # Ctrl-C reaches the whole process group; only the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import uvloop

    pooled = spec is None
    if pooled:  # its imports live as long as it does: out of the GC pass that starts each run
        gc.collect()
        gc.freeze()
    try:
        while True:
            if spec is None:
                try:
                    message = pipe.recv()  # EOF when the parent closes its end or dies
                except (EOFError, OSError):
                    return
                if message[0] == "measure":  # meant for a run that ended just before
                    continue
                if message[0] != "spec":
                    return
                spec = message[1]
                assert isinstance(spec, WorkerSpec)
            if not _drive(spec, pipe, uvloop.new_event_loop()) or not pooled:
                return
            pipe.send(("idle", spec.index, None))
            gc.unfreeze()  # the last run's pool and connections are garbage now: collect them
            gc.collect()  # while the parent sets up the next run
            gc.freeze()  # the rest stays: the next run's pass (40 ms on its critical path) skips it
            spec = None
    except OSError:
        return  # the parent went away
    finally:
        pipe.close()


def _drive(spec: WorkerSpec, pipe: multiprocessing.connection.Connection, loop: Any) -> bool:
    """Run one spec's driver on loop, then close it; False when it failed (the parent is told)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_Driver(spec, pipe).run())
        return True
    except BaseException:
        with contextlib.suppress(OSError):
            pipe.send(("error", spec.index, traceback.format_exc()))
        return False
    finally:
        close_loop(loop)


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Start spawned workers without re-running the caller's script in them.

    multiprocessing's spawn imports the parent's __main__ in every child, so a script that loads
    a service without an `if __name__ == "__main__":` guard would start its stack again in each
    load worker (and pay its imports). The workers only need this package: while a worker starts,
    __main__ shows neither a file nor a module spec, and spawn has nothing to re-import.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    names = ("__file__", "__spec__")
    saved: dict[str, Any] = {k: main.__dict__[k] for k in names if k in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        if "__spec__" in saved:
            main.__dict__["__spec__"] = None
        yield
    finally:
        main.__dict__.update(saved)


def _spawn(
    index: int,
    spec: WorkerSpec | None,
    procs: list[Any],
    pipes: list[multiprocessing.connection.Connection],
) -> None:
    """Start one worker process (spawn: nothing of this process is inherited), appending it."""
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=True)
    proc = ctx.Process(
        target=_worker_main, args=(spec, child_end), daemon=True, name=f"load-{index}"
    )
    with _main_hidden():
        proc.start()
    child_end.close()
    procs.append(proc)
    pipes.append(parent_end)


class Generators:
    """Load worker processes kept ready between runs (a sweep's points), or started ahead of one.

    Starting a worker, a fresh interpreter importing the engine, takes most of a second.
    prepare(n) starts the missing ones without waiting for them (say, while the service under test
    boots); run_load(generators=...) takes n, and gives them back when the run ended cleanly
    (otherwise it stops them). close() stops the rest; use the pool in a `with` block.
    """

    def __init__(self) -> None:
        self._procs: list[Any] = []
        self._pipes: list[multiprocessing.connection.Connection] = []
        self._spawned = 0
        self._pids: list[int] = []  # the pool's workers at the last prepare(), idle or lent

    def __len__(self) -> int:
        return len(self._procs)

    def pids(self) -> list[int]:
        """Process ids of the workers this pool started (idle or running a load), to account CPU."""
        return list(self._pids)

    def prepare(self, processes: int) -> Generators:
        """Start workers (in the background) until `processes` are ready or coming up."""
        processes = positive_int("processes", processes)
        if processes > MAX_PROCESSES:
            raise InputError("processes", f"must be at most {MAX_PROCESSES}, got {processes}")
        for i in reversed(range(len(self._procs))):
            if not self._procs[i].is_alive():  # died while idle: replace it
                self._pipes.pop(i).close()
                _stop([self._procs.pop(i)])
        while len(self._procs) < processes:
            _spawn(self._spawned, None, self._procs, self._pipes)
            self._spawned += 1
        # Runs take workers after prepare() and give back or stop them before the next one.
        self._pids = [proc.pid for proc in self._procs]
        return self

    def take(self, processes: int) -> tuple[list[Any], list[multiprocessing.connection.Connection]]:
        """`processes` workers and their pipes, no longer in the pool (the taker stops them)."""
        self.prepare(processes)
        procs, pipes = self._procs[:processes], self._pipes[:processes]
        del self._procs[:processes], self._pipes[:processes]
        return procs, pipes

    def give_back(
        self, procs: list[Any], pipes: list[multiprocessing.connection.Connection]
    ) -> None:
        """Return idle workers to the pool."""
        self._procs.extend(procs)
        self._pipes.extend(pipes)

    def close(self) -> None:
        """Stop every worker in the pool."""
        procs, pipes = self._procs, self._pipes
        self._procs, self._pipes, self._pids = [], [], []
        for pipe in pipes:
            pipe.close()  # an idle worker sees EOF and exits
        _stop(procs)

    def __enter__(self) -> Generators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _execute(plan: LoadPlan, generators: Generators | None = None) -> LoadResult:
    """Start the workers (or use prestarted ones), hand them a common start time, merge results."""
    profile = plan.profile
    drain = min(plan.timeout, MAX_DRAIN_S)
    specs = worker_specs(plan)
    mode = (
        f"open loop {profile.arrival} {profile.asked_rate:,.0f} req/s (cap {profile.connections} "
        "connections)"
        if profile.open_loop
        else f"closed loop {profile.connections} connections"
    )
    _say(
        plan,
        f"load {plan.url}: {mode}, {plan.processes} process(es), {plan.transport} transport, "
        f"{profile.duration:g} s + {profile.warmup:g} s warm-up",
    )
    procs: list[Any] = []
    pipes: list[multiprocessing.connection.Connection] = []
    collector: _Collector | None = None
    try:
        if generators is not None:
            procs, pipes = generators.take(len(specs))
            for spec, pipe in zip(specs, pipes, strict=True):
                with contextlib.suppress(OSError):  # a dead worker is reported by _receive
                    pipe.send(("spec", spec))
        else:
            for spec in specs:
                _spawn(spec.index, spec, procs, pipes)
        collector = _Collector(plan, specs)
        ready: set[int] = set()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(ready) < len(specs):
            for message in _receive(pipes, procs, deadline):
                if message[0] == "ready":
                    ready.add(message[1])
        start_at = time.monotonic() + (WARM_START_DELAY_S if profile.warmup > 0 else START_DELAY_S)
        # Wall-clock time of the measured window's start, to align server-side samples.
        collector.started_at = time.time() + (start_at - time.monotonic()) + profile.warmup
        for pipe in pipes:
            pipe.send(("start", start_at))
        deadline = start_at + profile.warmup + profile.duration + drain + DEADLINE_MARGIN_S
        steady = (
            SteadyWarmup(workers=len(specs), start_at=start_at, cap=profile.warmup)
            if plan.steady_warmup and profile.warmup > 0
            else None
        )
        finished: set[int] = set()
        idle: set[int] = set()
        while not collector.complete():
            for message in _receive(pipes, procs, deadline, finished):
                if message[0] == "idle":
                    idle.add(message[1])
                elif message[0] == "warm":
                    at = steady.add(message[2]) if steady is not None else None
                    if at is not None:  # latency is steady: every worker measures from `at`
                        steady = None
                        for pipe in pipes:
                            pipe.send(("measure", at))
                        collector.started_at += at - (start_at + profile.warmup)
                        collector.warmup_s = at - start_at
                        collector.warmup_end = WarmupEnd.STEADY
                else:
                    collector.add(message)
        if generators is None:
            for proc in procs:
                proc.join(5.0)
        else:  # workers that close their connections in time go back to the pool
            until = time.monotonic() + IDLE_TIMEOUT_S
            while time.monotonic() < until and any(
                spec.index not in idle and not pipe.closed
                for spec, pipe in zip(specs, pipes, strict=True)
            ):
                for message in _receive(pipes, procs, deadline, finished):
                    if message[0] == "idle":
                        idle.add(message[1])
            back = [i for i, spec in enumerate(specs) if spec.index in idle]
            generators.give_back([procs[i] for i in back], [pipes[i] for i in back])
            procs = [p for i, p in enumerate(procs) if i not in back]
            pipes = [p for i, p in enumerate(pipes) if i not in back]
        return collector.result()
    except KeyboardInterrupt as exc:
        if isinstance(exc, LoadInterrupted) or collector is None:
            raise
        raise LoadInterrupted(collector.partial()) from None
    except RuntimeError as exc:  # a worker died, failed or missed its deadline
        if collector is None:
            raise
        raise LoadFailed(str(exc), collector.partial(failure=str(exc))) from exc
    finally:
        _stop(procs)
        for pipe in pipes:
            pipe.close()


def _receive(
    pipes: list[multiprocessing.connection.Connection],
    procs: list[Any],
    deadline: float,
    finished: set[int] | None = None,
) -> list[tuple[Any, ...]]:
    """Messages available from the workers within a short wait; raises on errors and deadlines."""
    if time.monotonic() > deadline:
        raise RuntimeError("load workers missed their deadline")
    messages = []
    live = [p for p in pipes if not p.closed]
    for pipe in multiprocessing.connection.wait(live, timeout=0.25):
        assert isinstance(pipe, multiprocessing.connection.Connection)
        index = pipes.index(pipe)
        try:
            message = pipe.recv()
        except EOFError:
            pipe.close()
            if finished is None or index not in finished:
                procs[index].join(1.0)
                code = procs[index].exitcode
                if code is not None and code < 0:  # killed by a signal
                    raise RuntimeError(f"load worker {index} died (signal {-code})") from None
                raise RuntimeError(
                    f"load worker {index} exited without reporting (exit code {code}); a script "
                    "that calls run_load must guard its entry point with "
                    "`if __name__ == '__main__':` (multiprocessing spawn)"
                ) from None
            continue
        if message[0] == "error":
            raise RuntimeError(f"load worker {message[1]} failed:\n{message[2]}")
        if message[0] == "done" and finished is not None:
            finished.add(index)
        messages.append(message)
    if not messages:
        dead = [
            i
            for i, p in enumerate(procs)
            if p.exitcode not in (None, 0) and i not in (finished or ())
        ]
        if dead:
            proc = procs[dead[0]]
            raise RuntimeError(f"load worker {proc.name} died (exit code {proc.exitcode})")
    return messages


def _stop(procs: list[Any]) -> None:
    """Terminate any worker still alive, then kill it; leave no orphan behind."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
