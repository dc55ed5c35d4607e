"""run_load: plan a load, then run it on local generator processes or on Dask workers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench._errors import InputError
from workbench.load._distributed import check_cluster, run_distributed
from workbench.load._local import Generators, _execute
from workbench.load._plan import plan_load
from workbench.load._result import LoadResult
from workbench.load._scenario import Scenario


def run_load(
    url: str,
    *,
    connections: int = 64,
    duration: float = 10.0,
    rate: float | None = None,
    arrival: str = "constant",
    warmup: float = 1.0,
    processes: int | None = None,
    scenario: Scenario | str | Path | None = None,
    ids: int | None = None,
    stages: Sequence[tuple[float, float]] | None = None,
    think_time: float = 0.0,
    timeout: float = 10.0,
    transport: str = "raw",
    allow_remote: bool = False,
    progress: bool = True,
    cluster: object = None,
    generators: Generators | None = None,
) -> LoadResult:
    """Load an HTTP service (on Dask workers when cluster is given); safe inside a running event loop.

    generators: a pool of worker processes (Generators) to use, and give back, instead of new ones.
    """
    if cluster is not None:
        check_cluster(cluster)
        if generators is not None:
            raise InputError("generators", "are local processes; a cluster run starts its own")
    if generators is not None and not isinstance(generators, Generators):
        raise InputError("generators", f"must be a Generators, got {generators!r}")
    plan = plan_load(
        url,
        connections=connections,
        duration=duration,
        rate=rate,
        arrival=arrival,
        warmup=warmup,
        processes=processes if cluster is None else 1,  # a cluster's generators are checked there
        scenario=scenario,
        ids=ids,
        stages=stages,
        think_time=think_time,
        timeout=timeout,
        transport=transport,
        allow_remote=allow_remote,
        progress=progress,
    )
    if allow_remote:
        print(f"allow_remote=True: loading {plan.url} (not necessarily loopback)", flush=True)
    if cluster is not None:
        return run_distributed(plan, cluster=cluster, processes=processes)
    return _execute(plan, generators)
