"""Cluster: sweep points and tuning trials on Dask workers, one per host, their runs stored here.

Each point is a Dask task holding the worker resource `bench` (start one worker per host with
`--resources bench=1`, so that two points never share a machine). On each worker, a child process
(the agent) holds the sweep's stack (embedded in the worker's own folder, or the URLs given) and a
Session across its points, so that a point costs what it costs locally; Ctrl-C interrupts it (its
partial run comes home as a local sweep stores it), and a dead worker takes it down with its
stack (children die with their parent). Each point's stored runs come back as bytes into the
local store. The scheduler redoes a dead worker's point elsewhere. A worker started with
`--preload workbench.cluster` keeps an agent idle between sweeps, its imports done.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The worker's side imports only these: it hands points to its agent, which imports the rest.
from workbench import _fs, _process
from workbench._errors import InputError, StackError

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

    from workbench.experiment import Experiment
    from workbench.point import PointFailure
    from workbench.stack import Stack
    from workbench.store import Store
    from workbench.sweep import NotebookSweep, Sweep
    from workbench.tuning import Tuning

RESOURCE = "bench"  # the Dask worker resource a point holds: give each host's one worker bench=1
JOB_FILE = "job.pkl"
OUTCOME_FILE = "outcome.json"
EXECUTED = "executed.ipynb"
MANIFEST = "manifest.json"  # as workbench.store writes it
CANCEL_WAIT_S = 30.0  # a point interrupted by Ctrl-C stores what it measured within this
INTERRUPTED_EXIT = 130
FOLDER_WAIT_S = 60.0  # how long a new agent waits for the stack of a dead one to stop


@dataclass(frozen=True)
class StackSpec:
    """What each host's stack is: embedded (seeded with users) unless URLs are given."""

    users: int | None = None  # None: the stack's default
    database_url: str | None = None
    redis_url: str | None = None
    upstream_url: str | None = None

    @classmethod
    def of(cls, stack: Stack | None, *, users: int | None = None) -> StackSpec:
        """The spec of a Stack: only the URLs a user gave (an embedded server's are this host's)."""
        if stack is None:
            return cls(users=users)
        # servers this process started: their loopback URLs mean nothing on another host
        mine = stack.pids()
        return cls(
            users=users or stack.users,
            database_url=None if "postgres" in mine else stack.database_url,
            redis_url=None if "redis" in mine else stack.redis_url,
            upstream_url=None if "upstream" in mine else stack.upstream_url,
        )


@dataclass(frozen=True)
class Job:
    """One point for a worker: a pickled Experiment, or a notebook (its text) with its parameters."""

    key: str
    experiment: bytes = b""  # pickled here, unpickled by the agent (the worker needs no pandas)
    notebook: str = ""
    source: bytes = b""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Shipped:
    """A point's outcome sent home: its stored runs as files, the executed notebook, who ran it."""

    key: str
    worker: str
    host: str
    runs: dict[str, dict[str, bytes]]
    notebook: bytes | None = None
    error: tuple[str, str] | None = None  # (ename, evalue) when the notebook raised
    failure: str = ""  # what stopped the point when it raised (its run, if any, stored crashed)
    interrupted: bool = False

    def save(self, store: Store) -> list[str]:
        """Write the runs into store (each atomically, like Store.save); their ids."""
        from workbench.store import _TMP_PREFIX

        store.root.mkdir(parents=True, exist_ok=True)
        for run_id, files in self.runs.items():
            tmp = store.root / f"{_TMP_PREFIX}{run_id}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            final = store.path(run_id)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        return sorted(self.runs)


# --- the client's side -----------------------------------------------------------------------


def bench_workers(client: Client) -> dict[str, str]:
    """Address → host of every worker offering the `bench` resource; InputError when none does."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    found = {
        address: str(info.get("host") or address)
        for address, info in workers.items()
        if (info.get("resources") or {}).get(RESOURCE, 0) >= 1
    }
    if not found:
        raise InputError(
            "cluster",
            f"no Dask worker offers the resource {RESOURCE!r}: start one worker per host with "
            f"`dask worker SCHEDULER --nthreads 1 --resources {RESOURCE}=1 "
            "--preload workbench.cluster`",
        )
    hosts = list(found.values())
    shared = sorted({h for h in hosts if hosts.count(h) > 1})
    if shared:
        print(
            f"warning: several {RESOURCE} workers on {', '.join(shared)}: their points share a "
            "machine and disturb each other",
            file=sys.stderr,
            flush=True,
        )
    return found


@contextlib.contextmanager
def session(
    cluster: object, *, on_left: Callable[[Shipped], object] = lambda _: None
) -> Iterator[_ClusterSession]:
    """Connect to cluster; on leaving (Ctrl-C too) cancel what is left and stop every host's stack.

    on_left: each point that ended after the cancel (interrupted, its partial run stored), as a
    point ending normally would be, before the exception goes on.
    """
    from workbench.load._distributed import connect

    with connect(cluster) as client:
        own = _ClusterSession(client, token=uuid.uuid4().hex[:12])
        try:
            yield own
        except BaseException:
            for shipped in own.cancel():
                on_left(shipped)
            raise
        finally:
            own.stop_stacks()


@dataclass
class _ClusterSession:
    """Points submitted under one token: the stacks they start on the workers are the token's."""

    client: Client
    token: str
    futures: list[Any] = field(default_factory=list)

    def submit(self, job: Job, spec: StackSpec) -> Any:
        """Run a job on some bench worker; a future of its Shipped."""
        future = self.client.submit(
            _run_point,
            self.token,
            job,
            spec,
            key=f"workbench-point-{self.token}-{len(self.futures)}",
            resources={RESOURCE: 1},
            pure=False,
        )
        self.futures.append(future)
        return future

    def cancel(self) -> list[Shipped]:
        """Cancel the points not started and interrupt the running ones; what they stored."""
        # first: no point starts on a worker from now on, and the running ones store what
        # they measured; their tasks end on the workers whatever becomes of their futures
        with contextlib.suppress(Exception):
            self.client.run(_interrupt_points, self.token)
        with contextlib.suppress(Exception):
            self.client.cancel(self.futures)
        try:
            left = self.client.run(_collect_left, self.token, CANCEL_WAIT_S, on_error="ignore")
        except Exception:  # the scheduler gone meanwhile
            return []
        return [shipped for shipped_here in left.values() for shipped in shipped_here]

    def stop_stacks(self) -> None:
        """Stop the stack this session started on every worker."""
        with contextlib.suppress(Exception):
            self.client.run(_stop_stack, self.token)


def ship_all(
    jobs: Sequence[Job],
    *,
    cluster: object,
    spec: StackSpec,
    store: Store,
    on_point: Callable[[Shipped], None],
    on_failure: Callable[[Job, Exception], None],
) -> None:
    """Run jobs across the cluster's bench workers, saving each point's runs here as it ends.

    A point that could not run (its host's stack did not start, it killed worker after worker)
    goes to on_failure and the others go on; a rerun redoes it.
    """
    from distributed import as_completed

    def on_left(shipped: Shipped) -> None:
        shipped.save(store)
        on_point(shipped)

    with session(cluster, on_left=on_left) as own:
        bench_workers(own.client)
        futures = {own.submit(job, spec): job for job in jobs}
        for future in as_completed(futures, loop=own.client.loop):
            try:
                shipped: Shipped = future.result()
            except Exception as exc:
                on_failure(futures[future], exc)
                continue
            shipped.save(store)
            on_point(shipped)


def run_sweep(
    sweep: Sweep, *, cluster: object, stack: Stack | None, store: Store, progress: bool
) -> None:
    """Measure every point of a Sweep not yet finished, each on a bench worker."""
    finished = sweep.done(store)
    todo = [p for p in sweep.points() if _key(p) not in finished]
    say = print if progress else _quiet
    for point in sweep.points():
        if _key(point) in finished:
            say(f"skip (done): {_key(point)}")
    jobs = [Job(_key(p), experiment=pickle.dumps(sweep.experiment(p))) for p in todo]

    def on_point(shipped: Shipped) -> None:
        if shipped.failure:
            say(f"{shipped.key} on {shipped.worker} failed (a rerun redoes it): {shipped.failure}")
        for run_id in shipped.runs:
            row = store.summary(run_id) or {}
            say(
                f"{shipped.key} on {shipped.worker}: {row.get('status')}, "
                f"{row.get('throughput_rps') or 0:,.0f} req/s, P99 {row.get('p99_ms')} ms"
            )

    def on_failure(job: Job, exc: Exception) -> None:
        print(
            f"point {job.key} could not run (a rerun redoes it): {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )

    if jobs:
        spec = StackSpec.of(stack)
        ship_all(
            jobs, cluster=cluster, spec=spec, store=store, on_point=on_point, on_failure=on_failure
        )


def run_notebook_sweep(
    sweep: NotebookSweep, *, cluster: object, users: int | None, progress: bool
) -> list[PointFailure]:
    """Execute every point of a NotebookSweep not yet done, each on a bench worker; the failures."""
    from workbench.point import PointFailure
    from workbench.report import find_notebook
    from workbench.store import Store

    store = Store()
    points = sweep.points()
    done = sweep.done(store)
    sweep.folder.mkdir(parents=True, exist_ok=True)
    say = print if progress else _quiet
    source = find_notebook(sweep.notebook)
    by_key = {_key(p): p for p in points}
    jobs = []
    for point in points:
        if _key(point) in done:
            say(f"skip (done): {_key(point)}")
        else:
            jobs.append(
                Job(
                    _key(point),
                    notebook=source.name,
                    source=source.read_bytes(),
                    parameters=sweep.parameters(point, users=users),
                )
            )
    failures: list[PointFailure] = []

    def on_point(shipped: Shipped) -> None:
        final = sweep.notebook_of(by_key[shipped.key])
        failed = final.with_suffix(".failed.ipynb")
        if shipped.error is not None:
            if shipped.notebook is not None:
                failed.write_bytes(shipped.notebook)
            failures.append(PointFailure(by_key[shipped.key], *shipped.error, failed))
            say(f"FAILED on {shipped.worker}: {shipped.key}: {': '.join(shipped.error)}")
        elif shipped.notebook is not None and not shipped.interrupted:
            tmp = final.with_name(f".{final.stem}.tmp.ipynb")
            tmp.write_bytes(shipped.notebook)
            tmp.rename(final)
            failed.unlink(missing_ok=True)
            say(f"done on {shipped.worker}: {shipped.key}")

    def on_failure(job: Job, exc: Exception) -> None:
        final = sweep.notebook_of(by_key[job.key])
        failed = final.with_suffix(".failed.ipynb")
        failures.append(PointFailure(by_key[job.key], type(exc).__name__, str(exc), failed))
        say(f"FAILED: {job.key}: {type(exc).__name__}: {exc}")

    if jobs:
        spec = StackSpec.of(None, users=users or _users_of(points))
        ship_all(
            jobs, cluster=cluster, spec=spec, store=store, on_point=on_point, on_failure=on_failure
        )
    return failures


def by_machine(summary: pd.DataFrame, *, say: Callable[[str], None] = print) -> pd.DataFrame:
    """The summary grouped by machine (rows of one machine together); says when a grid mixed machines."""
    if summary.empty or "machine" not in summary:
        return summary
    grouped = summary.sort_values("machine", kind="stable").reset_index(drop=True)
    machines = grouped["machine"].dropna().unique()
    grouped.attrs["machines"] = len(machines)
    if len(machines) > 1:
        counts = grouped.groupby("machine")["host"].agg(lambda h: ", ".join(sorted(set(h))))
        say(
            f"note: this grid ran on {len(machines)} different machines ("
            + "; ".join(f"{m}: {hosts}" for m, hosts in counts.items())
            + "); compare points measured on one machine only"
        )
    return grouped


def tune_on(
    cluster: object,
    *,
    stack: Stack | None,
    base: Any,
    space: Mapping[str, tuple[Any, ...]],
    trials: int,
    slo: Any,
    experiment: Callable[[Any, dict[str, Any]], Experiment],
    seed: int,
    confirm: bool,
    store: Store,
    progress: bool,
) -> Tuning:
    """The tuner's trials in parallel on the cluster's bench workers (Optuna ask/tell), one per host."""
    import optuna
    from distributed import as_completed

    from workbench.capacity import breaks
    from workbench.seed import max_connections
    from workbench.stack import DEFAULT_MAX_CONNECTIONS
    from workbench.tuning import Tuning, suggest

    spec = StackSpec.of(stack)
    limit = max_connections(spec.database_url) if spec.database_url else DEFAULT_MAX_CONNECTIONS
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))

    def scored(trial: optuna.Trial, shipped: Shipped) -> float:
        run = store.load(next(iter(shipped.runs)))
        broken = breaks(run, slo)
        rps = float(run.summary().get("throughput_rps") or 0.0)
        trial.set_user_attr("run_id", run.run_id)
        trial.set_user_attr("worker", shipped.worker)
        trial.set_user_attr("broken", "; ".join(broken))
        trial.set_user_attr("p95_ms", run.summary().get("p95_ms"))
        if progress:
            verdict = "holds the SLO" if not broken else "breaks: " + "; ".join(broken)
            print(f"trial {trial.number:>3} on {shipped.worker}: {rps:>9,.0f} req/s, {verdict}")
        return 0.0 if broken else rps

    again = None
    with session(cluster, on_left=lambda shipped: shipped.save(store)) as own:
        n_jobs = len(bench_workers(own.client))
        running: dict[Any, optuna.Trial] = {}
        done = as_completed(loop=own.client.loop)
        asked = 0

        def ask() -> None:
            """Start trials until n_jobs run (infeasible ones are told at once)."""
            nonlocal asked
            while asked < trials and len(running) < n_jobs:
                trial = study.ask()
                asked += 1
                try:
                    settings = base.replace(**suggest(trial, space))
                    settings.check_database_limit(limit)
                except ValueError as exc:  # an infeasible combination scores nothing
                    trial.set_user_attr("skipped", str(exc))
                    study.tell(trial, 0.0)
                    continue
                point = experiment(settings, {"trial": trial.number})
                job = Job(str(trial.number), experiment=pickle.dumps(point))
                future = own.submit(job, spec)
                running[future] = trial
                done.add(future)

        ask()
        for future in done:
            trial = running.pop(future)
            try:
                shipped: Shipped = future.result()
            except Exception as exc:  # its host's stack did not start, or it killed its workers
                trial.set_user_attr("failure", f"{type(exc).__name__}: {exc}")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                shipped.save(store)
                if shipped.runs:
                    study.tell(trial, scored(trial, shipped))
                else:  # it failed before its run began
                    trial.set_user_attr("failure", shipped.failure)
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            ask()
        best = base.replace(**dict(study.best_params))
        if confirm and study.best_value > 0:
            job = Job("confirm", experiment=pickle.dumps(experiment(best, {"trial": "confirm"})))
            shipped = own.submit(job, spec).result()
            shipped.save(store)
            again = store.load(next(iter(shipped.runs))) if shipped.runs else None
    return Tuning.of(study, base=base, confirm=again)


def _key(point: Mapping[str, Any]) -> str:
    from workbench.point import point_key

    return point_key(point)


def _users_of(points: Sequence[Mapping[str, Any]]) -> int | None:
    return next((int(p["users"]) for p in points if "users" in p), None)


def _quiet(_: str) -> None:
    return None


# --- the worker's side -----------------------------------------------------------------------

_LOCK = threading.Lock()
_AGENTS: dict[str, _Agent] = {}  # token → the agent a session started on this worker
_ENDED: set[str] = set()  # tokens whose session ended or was cancelled: no point starts again
_RUNNING: dict[str, int] = {}  # token → its points running on this worker
_LEFT: dict[str, list[Shipped]] = {}  # token → its points that ended after the cancel
_QUIET = threading.Condition(_LOCK)  # notified when a point ends
_SPARES: dict[str, _Agent] = {}  # worker name → an idle agent (imports done, no stack yet)
_KEEP: set[str] = set()  # workers that keep an idle agent (started with the preload)


def host_root(worker_name: str) -> Path:
    """A worker's folder: its stack and its points' scratch space (one per worker, so that
    two workers on one machine never share a stack)."""
    from workbench.stack import stack_dir

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", worker_name).strip("-") or "worker"
    if len(slug) > 40:
        slug = slug[:30] + "-" + hashlib.sha1(slug.encode()).hexdigest()[:8]
    return stack_dir() / "cluster" / slug


@dataclass
class _Agent:
    """A child process of the worker holding a session's stack and load workers across its points.

    It answers `idle` once it has imported what a point needs, reads its stack's spec (a line of
    JSON), answers `ready FOLDER` once that stack is up, then reads one scratch folder per line
    on stdin, runs that point, and answers `done CODE`; SIGINT interrupts the point and ends it;
    the end of stdin ends it; either way its stack stops.
    """

    proc: subprocess.Popen[bytes]
    log: Path
    worker: str
    root: Path | None = None
    imported: bool = False  # it answered `idle`
    failure: str = ""  # why it did not start
    reported: bool = False  # its failure was raised to a point
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def spawn(cls, *, worker: str) -> _Agent:
        """Start an agent on this worker: it imports what a point needs, then waits for begin()."""
        argv = [sys.executable, "-m", "workbench.cluster", worker]
        log = Path(tempfile.mkstemp(prefix="workbench-agent-", suffix=".log")[1])
        return cls(_process.spawn(argv, log=log, pipe=True), log, worker)

    def begin(self, spec: StackSpec) -> None:
        """Give the agent its session's stack: it starts it (ready() waits for it)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(asdict(spec)).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:  # it died before: ready() says how
            pass

    @property
    def spent(self) -> bool:
        """A new agent is needed: this one's failure was reported, or it ended after starting."""
        return self.reported or (self.root is not None and self.proc.poll() is not None)

    def idle(self) -> None:
        """Wait until the agent has imported what a point needs (or failed to)."""
        with self.lock:
            self._idle()

    def _idle(self) -> None:
        if not self.imported and not self.failure:
            line = self._read()
            self.imported = line == "idle"
            self.failure = "" if self.imported else line

    def ready(self) -> Path:
        """Wait until the stack is up; its folder. StackError when it did not start (then the
        next point starts a new agent)."""
        with self.lock:
            self._idle()
            if self.root is None and not self.failure:
                kind, _, root = self._read().partition(" ")
                if kind == "ready":
                    self.root = Path(root)
                else:
                    self.failure = f"{kind} {root}"
            if self.root is not None:
                return self.root
            self.stop()
            self.reported = True
            tail = _process.log_tail(self.log, 30)
            raise StackError(f"the stack on {self.worker} did not start ({self.failure}); {tail}")

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().decode().strip() or f"exit {self.proc.wait()}"

    def run(self, scratch: Path) -> int:
        """Run the point whose job is in scratch; the agent's exit-style code (130: interrupted)."""
        assert self.proc.stdin is not None
        with self.lock:
            try:
                self.proc.stdin.write(f"{scratch}\n".encode())
                self.proc.stdin.flush()
            except OSError:
                return -1
            kind, _, code = self._read().partition(" ")
            return int(code) if kind == "done" else -1

    def interrupt(self) -> None:
        """Ctrl-C the agent: the running point stores what it measured, then the stack stops."""
        with contextlib.suppress(OSError):
            self.proc.send_signal(signal.SIGINT)

    def stop(self) -> None:
        """End the agent (its stack stops with it) and wait for it."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=CANCEL_WAIT_S)
        except subprocess.TimeoutExpired:
            _process.stop(self.proc, timeout=5)
        if self.proc.returncode == 0:
            self.log.unlink(missing_ok=True)  # kept when something went wrong


def _agent_for(token: str, spec: StackSpec, worker: str) -> _Agent:
    """The agent of token on this worker, started if need be (the global lock is not held while
    its stack starts: a cancel reaches it meanwhile)."""
    with _LOCK:
        if token in _ENDED:
            raise StackError("the sweep of this point ended (cancelled)")
        agent = _AGENTS.get(token)
        if agent is None or agent.spent:
            agent = _SPARES.pop(worker, None)
            if agent is None or agent.proc.poll() is not None:
                agent = _Agent.spawn(worker=worker)
            agent.begin(spec)
            _AGENTS[token] = agent
    agent.ready()
    return agent


def keep_spare(worker: str) -> None:
    """Start an idle agent on this worker for the next session, unless one is there: its
    imports (the larger part of an agent's start) are then paid before that session starts."""
    with _LOCK:
        spare = _SPARES.get(worker)
        if spare is None or spare.proc.poll() is not None:
            _SPARES[worker] = _Agent.spawn(worker=worker)


async def wait_spare(dask_worker: Any) -> bool:
    """Wait until this worker's idle agent has imported what a point needs; False if it has none
    (for Client.run: a benchmark's sweep should not pay for it)."""
    with _LOCK:
        spare = _SPARES.get(_name_of(dask_worker))
    if spare is None:
        return False
    await asyncio.to_thread(spare.idle)
    return not spare.failure


def dask_setup(worker: Any) -> None:
    """A worker started with `--preload workbench.cluster` keeps an idle agent, from its start
    and again after each session (a scheduler or nanny given the preload keeps none)."""
    from distributed import Worker

    if isinstance(worker, Worker):
        name = _name_of(worker)
        with _LOCK:
            _KEEP.add(name)
        keep_spare(name)


async def dask_teardown(worker: Any) -> None:
    """Stop the idle agent of a closing worker (a worker sharing our process would leave it)."""
    name = _name_of(worker)
    with _LOCK:
        _KEEP.discard(name)
        spare = _SPARES.pop(name, None)
    if spare is not None:
        await asyncio.to_thread(spare.stop)


def _name_of(worker: Any) -> str:
    return str(worker.name if worker.name is not None else worker.address)


def _run_point(token: str, job: Job, spec: StackSpec) -> Shipped:
    """The Dask task of one point: this worker's agent runs it, its runs come back as bytes.

    A point that ends after its session was cancelled (its future with it) is also kept for
    the client to collect (_collect_left).
    """
    from distributed import get_worker

    name = _name_of(get_worker())
    with _LOCK:
        _RUNNING[token] = _RUNNING.get(token, 0) + 1
    try:
        shipped = _point(token, job, spec, name)
        with _LOCK:
            if token in _ENDED:
                _LEFT.setdefault(token, []).append(shipped)
        return shipped
    finally:
        with _QUIET:
            _RUNNING[token] -= 1
            if not _RUNNING[token]:
                del _RUNNING[token]
            _QUIET.notify_all()


def _point(token: str, job: Job, spec: StackSpec, name: str) -> Shipped:
    agent = _agent_for(token, spec, name)
    assert agent.root is not None
    scratch = agent.root / "points" / uuid.uuid4().hex[:12]
    scratch.mkdir(parents=True)
    try:
        (scratch / JOB_FILE).write_bytes(pickle.dumps(job))
        code = agent.run(scratch)
        try:
            outcome = json.loads((scratch / OUTCOME_FILE).read_text())
        except (OSError, ValueError):
            tail = _process.log_tail(agent.log, 30)
            raise StackError(f"point {job.key} failed on {name} (code {code}):\n{tail}") from None
        runs: dict[str, dict[str, bytes]] = {}
        for folder in (scratch / "runs", scratch / "home" / "data" / "runs"):
            for run in folder.glob(f"*/{MANIFEST}"):
                if not run.parent.name.startswith("."):  # complete runs only (Store.ids)
                    runs[run.parent.name] = {p.name: p.read_bytes() for p in run.parent.iterdir()}
        executed = scratch / EXECUTED
        error = outcome.get("error")
        return Shipped(
            key=job.key,
            worker=name,
            host=str(outcome.get("host", "")),
            runs=runs,
            notebook=executed.read_bytes() if executed.exists() else None,
            error=(str(error[0]), str(error[1])) if error else None,
            interrupted=code == INTERRUPTED_EXIT,
            failure=str(outcome.get("failure", "")),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _interrupt_points(token: str) -> bool:
    """Cancel token's session on this worker: no point of it starts again, and its agent is
    Ctrl-C'd (its running point stores what it measured); True if there was an agent."""
    with _LOCK:
        _ENDED.add(token)
        agent = _AGENTS.get(token)
    if agent is not None:
        agent.interrupt()
    return agent is not None


async def _collect_left(token: str, timeout: float) -> list[Shipped]:
    """The points of token that ended here after the cancel, once none runs (within timeout)."""

    def wait() -> list[Shipped]:
        with _QUIET:
            _QUIET.wait_for(lambda: not _RUNNING.get(token), timeout=timeout)
            return _LEFT.pop(token, [])

    return await asyncio.to_thread(wait)  # the worker's event loop goes on meanwhile


async def _stop_stack(token: str, dask_worker: Any = None) -> bool:
    """End the agent of token on this worker, and with it its stack (then a worker that keeps an
    idle agent starts one for the next session); True if there was an agent."""
    with _LOCK:
        agent = _AGENTS.pop(token, None)
        _ENDED.add(token)
        _LEFT.pop(token, None)
    if agent is not None:
        await asyncio.to_thread(agent.stop)  # the worker's event loop goes on meanwhile
        name = _name_of(dask_worker) if dask_worker is not None else ""
        if name in _KEEP:
            keep_spare(name)
    return agent is not None


# --- the agent (a child process of the worker) -------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _agent_main(worker: str) -> int:
    """Import what a point needs, read the stack's spec, start that stack, then run the points
    named on stdin until it ends or we are stopped."""
    # SIGINT (a cancelled sweep) and SIGTERM (the worker died) stop the point as Ctrl-C does,
    # whatever the worker's own handlers were; leaving the `with` blocks stops the stack.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    # The answers go on a copy of stdout; whatever else writes to stdout (us or our children)
    # goes to the log, not into the answers.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    try:
        from workbench.experiment import Session
        from workbench.fingerprint import fingerprint, machine
        from workbench.stack import DEFAULT_USERS, Stack
        from workbench.store import Store  # noqa: F401  # a point's, imported before it starts

        where = {"worker": worker, "host": socket.gethostname(), "machine": machine(fingerprint())}
        with Session() as s:
            # one load worker process started while idle: a point's load needs at least one
            s.generators.prepare(1)
            answers.write("idle\n")
            line = sys.stdin.readline()
            if not line:  # a spare that no session took
                return 0
            spec = StackSpec(**json.loads(line))
            for name, url in (
                ("DATABASE_URL", spec.database_url),
                ("REDIS_URL", spec.redis_url),
                ("UPSTREAM_URL", spec.upstream_url),
            ):
                if url:
                    os.environ[name] = url
                else:  # this worker's own environment names no server of the sweep
                    os.environ.pop(name, None)
            root = host_root(worker)
            mode = _fs.TRAVERSABLE if _process.unprivileged_user() else _fs.PRIVATE
            for folder in (root.parent.parent, root.parent, root):  # ours, never through a link
                _fs.private_dir(folder, mode=mode)
            os.environ["WORKBENCH_STACK_DIR"] = str(root)  # the services and loads we start
            _wait_for_folder(root / "stack")
            users = spec.users or DEFAULT_USERS
            with Stack(users=users, root=root / "stack", progress=_quiet) as stack:
                answers.write(f"ready {root}\n")
                try:
                    while line := sys.stdin.readline():
                        code = _agent_point(Path(line.strip()), stack, s, where)
                        answers.write(f"done {code}\n")
                        if code == INTERRUPTED_EXIT:
                            return code
                finally:
                    s.settle()  # the last point's service stops before its stack does
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT
    except Exception as exc:
        answers.write("error " + " ".join(f"{type(exc).__name__}: {exc}".split()) + "\n")
        return 1
    return 0


def _wait_for_folder(folder: Path, *, timeout: float = FOLDER_WAIT_S) -> None:
    """Wait until no process holds the stack folder: the agent of a worker that died just before
    (the worker restarted by its nanny, with the same name) may still be stopping its stack."""
    from workbench.stack import LOCK_FILE

    path = folder / LOCK_FILE
    if not path.exists():
        return
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if time.monotonic() > deadline:
                    return  # Stack.start names the holder
                time.sleep(0.25)
            else:
                return
    finally:
        os.close(fd)  # releases the lock for Stack.start to take


def _agent_point(scratch: Path, stack: Stack, session: Any, where: Mapping[str, str]) -> int:
    """Run one point's job against the stack, its runs stored under scratch; 130 when interrupted."""
    from workbench.store import Store

    job: Job = pickle.loads((scratch / JOB_FILE).read_bytes())
    outcome: dict[str, Any] = {"host": where["host"]}
    code = 0
    try:
        if job.experiment:
            experiment: Experiment = pickle.loads(job.experiment)
            labelled = replace(experiment, labels={**experiment.labels, **where})
            labelled.run(stack, store=Store(scratch / "runs"), progress=False, session=session)
        else:
            outcome["error"] = _execute_notebook(job, scratch, stack, where)
    except KeyboardInterrupt:
        code = INTERRUPTED_EXIT  # the run was stored as interrupted
    except Exception as exc:  # a crashed run is stored as such; the outcome says why
        outcome["failure"] = f"{type(exc).__name__}: {exc}"
    (scratch / OUTCOME_FILE).write_text(json.dumps(outcome))
    return code


def _execute_notebook(
    job: Job, scratch: Path, stack: Stack, where: Mapping[str, str]
) -> list[str] | None:
    """Execute the job's notebook on the stack (its runs stored under scratch/home); its error."""
    import papermill
    from nbclient.exceptions import DeadKernelError

    from workbench.report import execute

    source = scratch / job.notebook
    source.write_bytes(job.source)
    params = dict(job.parameters)
    if "labels" in params:
        params["labels"] = {**dict(params["labels"] or {}), **where}
    saved = dict(os.environ)
    # the kernel attaches to this host's stack and its Store() writes under scratch
    os.environ.update({**stack.env(), "WORKBENCH_HOME": str(scratch / "home")})
    try:
        execute(source, parameters=params, output=scratch / EXECUTED, log_output=False)
    except (papermill.PapermillExecutionError, DeadKernelError) as exc:
        return [
            str(getattr(exc, "ename", type(exc).__name__)),
            str(getattr(exc, "evalue", str(exc))),
        ]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return None


if __name__ == "__main__":
    code = _agent_main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    # What we started is stopped by now: skip the interpreter's teardown (with pandas and the
    # rest loaded, 0.5-1.5 s on a busy machine), which the end of a sweep would wait for.
    os._exit(code)
