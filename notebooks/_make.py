"""Write the notebooks from their cell sources (run: python notebooks/_make.py); outputs stay empty."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
KERNEL = {"name": "fastapi-workbench", "display_name": "Python (FastAPI workbench)", "language": "python"}


def notebook(name: str, cells: list[tuple[str, str]]) -> None:
    """Write notebooks/<name>.ipynb from (kind, source) pairs; kind 'params' tags the cell."""
    out = []
    for kind, source in cells:
        source = source.strip("\n")
        if kind == "md":
            out.append(new_markdown_cell(source))
        else:
            cell = new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
            out.append(cell)
    nb = new_notebook(cells=out, metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})
    nbformat.write(nb, HERE / f"{name}.ipynb")


QUICKSTART = [
    ("md", """
# Quickstart: launch the service, load it, look inside

Starts PostgreSQL and Redis (embedded, or yours through `database_url` / `redis_url`),
seeds them, launches the bundled FastAPI service with the chosen settings, loads it for
`duration` seconds — closed loop over `connections` connections, or open loop at `rate`
requests/s — samples the service's metrics and processes every second, and stores the run in
`data/runs/`. Headless: `workbench report 01_quickstart -p duration 10 -p preset naive`.
"""),
    ("params", """
duration = 5.0  # seconds of measured load (after a 1 s warm-up)
connections = 16  # concurrent connections (virtual users); a cap in open loop
rate = 0  # requests per second for an open-loop run, 0 for a closed loop
users = 100_000  # users seeded into the database
preset = "optimized"  # "naive" or "optimized"
settings = {}  # ServiceSettings overrides, e.g. {"pool_size": 20, "workers": 2}
endpoint = "/users/{id}"  # path under load; {id} is a random seeded user id
database_url = ""  # an existing PostgreSQL (postgresql://...) instead of the embedded one
redis_url = ""  # an existing Redis (redis://...) instead of the embedded one
labels = {}  # extra columns for this run in the results store (sweeps set them)
"""),
    ("code", """
import workbench as wb

params = wb.check_params(
    duration=duration, connections=connections, rate=rate, users=users, preset=preset,
    settings=settings, endpoint=endpoint, database_url=database_url, redis_url=redis_url,
)
wb.setup()
params.settings.diff()  # what differs from the naive baseline
"""),
    ("md", "## Launch, load, sample"),
    ("code", """
experiment = wb.Experiment(
    settings=params.settings, path=params.endpoint,
    connections=params.connections, duration=params.duration, rate=params.rate, name="quickstart",
    labels=labels,
)
with wb.Stack(users=params.users, database_url=params.database_url, redis_url=params.redis_url) as stack:
    run = experiment.run(stack)
print(run.manifest["bottleneck"]["sentence"])
wb.summary_table(run)
"""),
    ("md", "## Throughput and latency over time"),
    ("code", "wb.show(wb.plots.throughput_over_time(run))"),
    ("code", "wb.show(wb.plots.latency_over_time(run))"),
    ("md", "## Latency by percentile (HDR spectrum)"),
    ("code", "wb.show(wb.plots.percentile_spectrum({params.endpoint: run}))"),
    ("md", "## Inside the service"),
    ("code", "wb.show(wb.plots.server_panels(run.server))"),
]


if __name__ == "__main__":
    notebook("01_quickstart", QUICKSTART)
