"""run_load: a LoadPlan run on local generator processes or on Dask workers."""

from __future__ import annotations

from typing import Any

from workbench._errors import InputError
from workbench.load._distributed import check_cluster, run_distributed
from workbench.load._local import Generators, _execute
from workbench.load._plan import LoadPlan
from workbench.load._result import LoadResult


def run_load(
    url: str | LoadPlan,
    *,
    cluster: object = None,
    generators: Generators | None = None,
    **options: Any,
) -> LoadResult:
    """Load an HTTP service (on Dask workers when cluster is given); safe inside a running event loop.

    url: a LoadPlan, or a URL and the options of LoadPlan.build (connections, duration, rate...).
    generators: a pool of worker processes (Generators) to use, and give back, instead of new ones.
    """
    if cluster is not None:
        check_cluster(cluster)
        if generators is not None:
            raise InputError("generators", "are local processes; a cluster run starts its own")
    if generators is not None and not isinstance(generators, Generators):
        raise InputError("generators", f"must be a Generators, got {generators!r}")
    if isinstance(url, LoadPlan):
        if options:
            raise InputError(
                sorted(options)[0], "is part of the LoadPlan given; set it there, not here"
            )
        plan = url
    else:
        plan = LoadPlan.build(url, **options, cluster=cluster is not None)
    if plan.allow_remote:
        print(f"allow_remote=True: loading {plan.url} (not necessarily loopback)", flush=True)
    if cluster is not None:
        return run_distributed(plan, cluster=cluster, processes=plan.asked_processes)
    return _execute(plan, generators)
