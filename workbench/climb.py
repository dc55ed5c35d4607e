"""The optimization ladder measured here: each step's capacity under an SLO and its latency at a fixed load."""

from __future__ import annotations

import pandas as pd

from service.settings import ladder as ladder_steps
from workbench.capacity import search
from workbench.experiment import Experiment
from workbench.load import SLO
from workbench.stack import Stack
from workbench.store import Store

# The account's figures (a cluster behind a load balancer, not one machine): req/s per step.
PUBLISHED_RPS = pd.Series(
    {
        "naive": 5_000,
        "+pool": 8_000,
        "+serialization": 15_000,
        "+async": 25_000,
        "+cache": 35_000,
        "+workers": 50_000,
    },
    name="published (cluster)",
)
PUBLISHED_P95_MS = {"naive": 200.0, "+workers": 45.0}


def climb(
    stack: Stack,
    *,
    slo: SLO | str = "p95=50ms,errors=1%",
    path: str = "/users/{id}",
    fixed_rate: float = 300.0,
    duration: float = 3.0,
    start: float = 250.0,
    bisections: int = 2,
    steps: list[str] | None = None,
    ids: str = "uniform",
    zipf_s: float = 1.1,
    store: Store | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per ladder step: capacity under the SLO, P95/P99 at fixed_rate, ratios to naive."""
    rows = []
    for name, settings in ladder_steps():
        if steps and name not in steps:
            continue
        if progress:
            print(f"--- {name}", flush=True)
        fixed = Experiment(
            settings=settings, path=path, rate=fixed_rate, duration=duration, connections=256,
            ids=ids, zipf_s=zipf_s, name=f"ladder {name}", labels={"ladder_step": name},
        ).run(stack, store=store, progress=False)  # fmt: skip
        capacity = search(
            stack, settings=settings, slo=slo, path=path, start=start, duration=duration,
            bisections=bisections, ids=ids, zipf_s=zipf_s, store=store, progress=progress,
        )  # fmt: skip
        row = fixed.summary()
        rows.append(
            {
                "step": name,
                "max_rps": capacity.max_rate or 0.0,
                "broke_at": capacity.broke_at,
                "bottleneck": capacity.bottleneck.get("kind", ""),
                f"p95_ms_at_{fixed_rate:g}": row.get("p95_ms"),
                f"p99_ms_at_{fixed_rate:g}": row.get("p99_ms"),
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame):
        base = frame["max_rps"].iloc[0] or float("nan")
        frame["ratio_to_naive"] = frame["max_rps"] / base
        frame["published_rps"] = frame["step"].map(PUBLISHED_RPS)
        frame["published_ratio"] = frame["published_rps"] / PUBLISHED_RPS["naive"]
    return frame
