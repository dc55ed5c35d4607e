"""Sweep: a grid of settings × load levels, measured point by point, resumable."""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm import tqdm

from service.settings import ServiceSettings, SettingsError
from workbench._errors import InputError
from workbench.experiment import Experiment, Session
from workbench.launcher import ServiceProcess
from workbench.point import PointFailure, point_key
from workbench.run import RunStatus
from workbench.stack import DEFAULT_USERS, Stack
from workbench.store import Store

if TYPE_CHECKING:
    from workbench.kernel import WarmKernel

LOAD_KEYS = ("rate", "connections")


def check_grid(grid: Mapping[str, Sequence[Any]], *, base: ServiceSettings) -> list[dict[str, Any]]:
    """The grid's points, each checked (names, types, bounds) before anything starts."""
    if not grid or any(
        not isinstance(v, Sequence) or isinstance(v, str) or not v for v in grid.values()
    ):
        raise InputError(
            "grid", "must map names to non-empty lists of values, e.g. {'pool_size': [5, 20]}"
        )
    valid = [*ServiceSettings.names(), *LOAD_KEYS]
    for name in grid:
        if name not in valid:
            raise InputError(name, f"unknown grid name; valid names are: {', '.join(valid)}")
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    for point in points:
        try:
            base.replace(**{k: v for k, v in point.items() if k not in LOAD_KEYS})
        except SettingsError as exc:
            raise InputError(exc.name, exc.reason) from None
        for key in LOAD_KEYS:
            if key in point and (
                isinstance(point[key], bool)
                or not isinstance(point[key], int | float)
                or point[key] <= 0
            ):
                raise InputError(key, f"must be a positive number, got {point[key]!r}")
    return points


@dataclass(frozen=True)
class Sweep:
    """Settings × load levels around a base experiment; finished points are skipped on rerun."""

    grid: Mapping[str, Sequence[Any]]
    base: Experiment = field(default_factory=Experiment)
    name: str = ""

    def __post_init__(self) -> None:
        check_grid(self.grid, base=self.base.settings)

    @property
    def sweep_id(self) -> str:
        """Same grid and base → same id, so that a rerun resumes."""
        text = json.dumps(
            {
                "grid": dict(self.grid),
                "profile": self.base.profile(),
                "base": self.base.settings.to_dict(),
            },
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        return f"{self.name or 'sweep'}-{digest}"

    def points(self) -> list[dict[str, Any]]:
        """Every point of the grid."""
        return check_grid(self.grid, base=self.base.settings)

    def experiment(self, point: Mapping[str, Any]) -> Experiment:
        """The experiment of one point."""
        settings = self.base.settings.replace(
            **{k: v for k, v in point.items() if k not in LOAD_KEYS}
        )
        load = {k: v for k, v in point.items() if k in LOAD_KEYS}
        labels = {**self.base.labels, "sweep": self.sweep_id, "point": point_key(point), **point}
        return replace(
            self.base, settings=settings, load=self.base.load.replace(**load), labels=labels,
            name=self.sweep_id,
        )  # fmt: skip

    def done(self, store: Store) -> set[str]:
        """Keys of the points already finished in the store (crashed or interrupted ones are redone)."""
        return _finished_points(store, self.sweep_id)

    def run(
        self,
        stack: Stack | None = None,
        *,
        store: Store | None = None,
        progress: bool = True,
        cluster: object = None,
    ) -> pd.DataFrame:
        """Measure every point not yet finished; the summary of every finished point.

        cluster (a Dask scheduler address, Client or LocalCluster): each point on a worker with
        the resource `bench`, with that host's own stack (or stack's URLs); see workbench.cluster.
        """
        store = store if store is not None else Store()
        if cluster is not None:
            from workbench import cluster as on_cluster

            on_cluster.run_sweep(self, cluster=cluster, stack=stack, store=store, progress=progress)
            return on_cluster.by_machine(self.summary(store))
        if stack is None:
            raise InputError("stack", "is needed without a cluster: give a started Stack")
        points = self.points()
        finished = self.done(store)
        bar = tqdm(
            total=len(points), desc=self.sweep_id, file=sys.stdout, ascii=True, disable=not progress
        )
        # One session: load workers kept across points, each service stopped during the next
        # boot, the next point's service booting while this point's results are stored, and
        # each warm-up ended once latency is steady (the base's warmup seconds at most).
        todo = [p for p in points if point_key(p) not in finished]
        booting: list[_Boot] = []

        def boot_next(point: Mapping[str, Any]) -> None:
            booting.append(_Boot(self.experiment(point).settings, stack))

        with bar, Session(steady_warmup=True) as session:
            try:
                for point in points:
                    if point_key(point) in finished:
                        if progress:
                            bar.write(f"skip (done): {point_key(point)}")
                        bar.update(1)
                        continue
                    if booting:
                        waited = time.monotonic()
                        service = booting.pop().take()
                        session.timings["service_wait_s"] = time.monotonic() - waited
                    else:
                        service = None
                    later = todo[todo.index(point) + 1 :]
                    session.on_load_end = (lambda p=later[0]: boot_next(p)) if later else None
                    try:
                        run = self.experiment(point).run(
                            stack, store=store, progress=False, session=session, service=service
                        )
                    finally:
                        if service is not None:
                            session.stop_later(service)
                    row = run.summary()
                    if run.status is not RunStatus.FINISHED:
                        bar.write(f"{run.status} (a rerun redoes it): {point_key(point)}")
                    elif progress:
                        bar.write(
                            f"{point_key(point)}: {row.get('throughput_rps', 0):,.0f} req/s, "
                            f"P99 {row.get('p99_ms', float('nan')):.1f} ms, {row['bottleneck']}"
                        )
                    bar.update(1)
            finally:
                session.on_load_end = None
                for boot in booting:  # booted for a point that will not run now
                    boot.cancel()
        return self.summary(store)

    def summary(self, store: Store | None = None) -> pd.DataFrame:
        """One row per finished point (the latest run of each)."""
        return _finished_runs(store if store is not None else Store(), self.sweep_id)


class _Boot:
    """A service booting in the background for the next point of a sweep."""

    def __init__(self, settings: ServiceSettings, stack: Stack) -> None:
        self.service = ServiceProcess(settings, stack)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="workbench-service-boot")
        self._thread.daemon = True
        self._thread.start()

    def _start(self) -> None:
        try:
            self.service.start()
        except BaseException as exc:  # the point's own run starts it again and reports it
            self.error = exc

    def take(self) -> ServiceProcess | None:
        """The booted service, or None when it failed to boot (stopped)."""
        self._thread.join()
        if self.error is not None:
            self.service.stop()
            return None
        return self.service

    def cancel(self) -> None:
        """Wait for the boot and stop the service."""
        self._thread.join()
        self.service.stop()


def parse_grid(pairs: Sequence[tuple[str, str]]) -> dict[str, list[Any]]:
    """`-p name v1,v2,...` pairs → {name: [values]} (values parsed as JSON when they can be)."""
    from workbench.report import parse_value

    grid: dict[str, list[Any]] = {}
    for name, text in pairs:
        values = [parse_value(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise InputError(name, f"needs at least one value, got {text!r}")
        grid[name] = values
    if not grid:
        raise InputError("grid", "is empty: give at least one -p NAME V1,V2,...")
    return grid


class SweepFailed(RuntimeError):
    """Some points of a notebook sweep failed; the others ran and are kept."""

    def __init__(self, failures: Sequence[PointFailure], summary: pd.DataFrame) -> None:
        self.failures = tuple(failures)
        self.summary = summary
        super().__init__(
            f"{len(self.failures)} point(s) failed: "
            + "; ".join(f"{point_key(f.point)}: {f.ename}: {f.evalue}" for f in self.failures)
        )


@dataclass(frozen=True)
class NotebookSweep:
    """One papermill execution of a notebook per grid point; executed notebooks mark points done."""

    notebook: str
    grid: Mapping[str, Sequence[Any]]

    def points(self) -> list[dict[str, Any]]:
        """Every point, checked against the notebook's parameters and ServiceSettings names."""
        import papermill

        from workbench.params import check_params
        from workbench.report import find_notebook

        known = list(papermill.inspect_notebook(str(find_notebook(self.notebook))))
        settings_names = ServiceSettings.names() if "settings" in known else []
        for name in self.grid:
            if name not in known and name not in settings_names:
                raise InputError(
                    name,
                    "unknown name; valid names are the notebook's parameters "
                    f"({', '.join(known)}) and settings ({', '.join(settings_names)})",
                )
        points = [
            dict(zip(self.grid, v, strict=True)) for v in itertools.product(*self.grid.values())
        ]
        checkable = set(check_params.__kwdefaults__ or {})
        for point in points:
            params = self.parameters(point, known)
            check_params(**{k: v for k, v in params.items() if k in checkable})
        return points

    def parameters(
        self,
        point: Mapping[str, Any],
        known: Sequence[str] | None = None,
        *,
        users: int | None = None,
    ) -> dict[str, Any]:
        """The papermill parameters of one point (setting names go into `settings`).

        users: what the sweep seeded, given to a notebook with a `users` parameter that the point
        leaves out (its default would seed the attached database again, with another size).
        """
        if known is None:
            import papermill

            from workbench.report import find_notebook

            known = list(papermill.inspect_notebook(str(find_notebook(self.notebook))))
        params = {k: v for k, v in point.items() if k in known}
        settings = {k: v for k, v in point.items() if k not in known}
        if settings:
            params["settings"] = {**dict(params.get("settings") or {}), **settings}
        if users is not None and "users" in known and "users" not in point:
            params["users"] = users
        if "labels" in known:
            params["labels"] = {"sweep": self.sweep_id, "point": point_key(point), **point}
        return params

    @property
    def sweep_id(self) -> str:
        """Same notebook and grid → same id, so that a rerun resumes."""
        text = json.dumps(
            {"notebook": self.notebook, "grid": dict(self.grid)}, sort_keys=True, default=str
        )
        stem = self.notebook.rsplit("/", 1)[-1].removesuffix(".ipynb")
        return f"{stem}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"

    @property
    def folder(self) -> Path:
        """data/sweeps/<sweep_id>: one executed notebook per point done, and summary.csv."""
        from workbench.paths import project_dir

        return project_dir() / "data" / "sweeps" / self.sweep_id

    def notebook_of(self, point: Mapping[str, Any]) -> Path:
        """Where the executed notebook of a point is kept once done."""
        return self.folder / f"{hashlib.sha1(point_key(point).encode()).hexdigest()[:10]}.ipynb"

    def done(self, store: Store | None = None) -> set[str]:
        """Keys of the points whose notebook ran, unless the point's latest run crashed."""
        crashed = self._crashed(store if store is not None else Store())
        return {
            point_key(p)
            for p in self.points()
            if point_key(p) not in crashed and self.notebook_of(p).exists()
        }

    def _crashed(self, store: Store) -> set[str]:
        """Keys of the points whose latest stored run crashed."""
        runs = store.runs()
        if runs.empty or not {"sweep", "point"} <= set(runs):
            return set()
        latest = runs[runs["sweep"] == self.sweep_id].drop_duplicates("point", keep="last")
        return set(latest.loc[latest["status"] == RunStatus.CRASHED, "point"])

    def run(
        self, *, users: int | None = None, progress: bool = True, cluster: object = None
    ) -> pd.DataFrame:
        """Start the stack once, execute every point not yet done, and summarize the sweep's runs.

        cluster: each point on a Dask worker with the resource `bench` (see workbench.cluster).
        """
        import os

        from workbench.kernel import WarmKernel
        from workbench.report import ensure_kernel, find_notebook

        if cluster is not None:
            from workbench import cluster as on_cluster

            failed = on_cluster.run_notebook_sweep(
                self, cluster=cluster, users=users, progress=progress
            )
            summary = on_cluster.by_machine(self._summary(self.folder))
            if failed:
                raise SweepFailed(failed, summary)
            return summary
        points = self.points()
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        store = Store()
        done = self.done(store)
        failures: list[PointFailure] = []
        if all(point_key(point) in done for point in points):  # no stack, no kernel to start
            for point in points:
                print(f"skip (done): {point_key(point)}", flush=True)
            return self._summary(folder)
        seeded = int(users or next((p["users"] for p in points if "users" in p), DEFAULT_USERS))
        with Stack(users=seeded, progress=lambda _: None) as stack:
            saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "REDIS_URL", "UPSTREAM_URL")}
            os.environ.update(stack.env())  # every point's kernel attaches to this stack
            try:
                bar = tqdm(
                    total=len(points),
                    desc=self.sweep_id,
                    file=sys.stdout,
                    ascii=True,
                    disable=not progress,
                )
                # One kernel for every point, reset before each to what a fresh one would be:
                # papermill's kernel start and the imports (~3 s) are paid once.
                kernel = WarmKernel(
                    kernel_name=ensure_kernel(), cwd=find_notebook(self.notebook).parent
                )
                with bar, kernel:
                    for point in points:
                        final = self.notebook_of(point)
                        if point_key(point) in done:
                            bar.write(f"skip (done): {point_key(point)}")
                        else:
                            slug = final.stem
                            before = set(store.ids())
                            failure = self._execute(
                                point, folder, slug, kernel=kernel, users=seeded
                            )
                            if failure is not None:
                                failures.append(failure)
                                bar.write(
                                    f"FAILED: {point_key(point)}: {failure.ename}: "
                                    f"{failure.evalue} (see {failure.executed})"
                                )
                            else:
                                # only the runs this point stored, not the whole store again
                                crashed = any(
                                    (row := store.summary(run_id)) is not None
                                    and row.get("status") == RunStatus.CRASHED
                                    for run_id in set(store.ids()) - before
                                )
                                how = "crashed (a rerun redoes it)" if crashed else "done"
                                bar.write(f"{how}: {point_key(point)}")
                        bar.update(1)
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        summary = self._summary(folder)
        if failures:
            raise SweepFailed(failures, summary)
        return summary

    def _execute(
        self,
        point: Mapping[str, Any],
        folder: Path,
        slug: str,
        *,
        kernel: WarmKernel | None = None,
        users: int | None = None,
    ) -> PointFailure | None:
        """Run one point's notebook; its failure (the notebook raised, the kernel died) or None."""
        import papermill
        from nbclient.exceptions import DeadKernelError

        from workbench.report import execute

        tmp = folder / f".{slug}.tmp.ipynb"
        failed = folder / f"{slug}.failed.ipynb"
        try:
            execute(
                self.notebook,
                parameters=self.parameters(point, users=users),
                output=tmp,
                log_output=False,
                kernel=kernel,
            )
        except (papermill.PapermillExecutionError, DeadKernelError) as exc:
            if tmp.exists():
                tmp.replace(failed)  # kept, with the error, for the user to open
            ename = getattr(exc, "ename", type(exc).__name__)
            evalue = getattr(exc, "evalue", str(exc))
            return PointFailure(dict(point), str(ename), str(evalue), failed)
        tmp.rename(folder / f"{slug}.ipynb")
        failed.unlink(missing_ok=True)  # an earlier failure of this point, redone now
        return None

    def _summary(self, folder: Path) -> pd.DataFrame:
        summary = _finished_runs(Store(), self.sweep_id)
        if "sweep" in summary:
            summary.to_csv(folder / "summary.csv", index=False)
        return summary


def _finished_runs(store: Store, sweep_id: str) -> pd.DataFrame:
    """The latest finished run of each point of a sweep, one row each."""
    runs = store.runs()
    if runs.empty or "sweep" not in runs:
        return runs
    mine = runs[(runs["sweep"] == sweep_id) & (runs["status"] == RunStatus.FINISHED)]
    return mine.drop_duplicates("point", keep="last").reset_index(drop=True)


def _finished_points(store: Store, sweep_id: str) -> set[str]:
    runs = _finished_runs(store, sweep_id)
    return set(runs["point"]) if not runs.empty and "point" in runs else set()
