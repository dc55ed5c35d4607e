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
# Quickstart: launch the service, load it, look at the curves

Starts PostgreSQL and Redis (embedded, or yours through `database_url` / `redis_url`),
seeds them, launches the bundled FastAPI service with the chosen settings, fires a
closed-loop load of `connections` concurrent clients for `duration` seconds and plots
throughput and latency. Run it headless with
`papermill notebooks/01_quickstart.ipynb out.ipynb -p duration 10 -p preset naive`.
"""),
    ("params", """
duration = 5.0  # seconds of load
connections = 16  # concurrent connections (virtual users)
users = 100_000  # users seeded into the database
preset = "optimized"  # "naive" or "optimized"
settings = {}  # ServiceSettings overrides, e.g. {"pool_size": 20, "workers": 2}
endpoint = "/users/{id}"  # path under load; {id} is a random seeded user id
database_url = ""  # an existing PostgreSQL (postgresql://...) instead of the embedded one
redis_url = ""  # an existing Redis (redis://...) instead of the embedded one
"""),
    ("code", """
import workbench as wb

params = wb.check_params(
    duration=duration, connections=connections, users=users, preset=preset,
    settings=settings, endpoint=endpoint, database_url=database_url, redis_url=redis_url,
)
wb.setup()
params.settings.diff()
"""),
    ("md", "## Launch and load"),
    ("code", """
with wb.Stack(users=params.users, database_url=params.database_url, redis_url=params.redis_url) as stack:
    with wb.ServiceProcess(params.settings, stack) as service:
        result = wb.quick_load(
            service.url + params.endpoint,
            connections=params.connections, duration=params.duration, id_range=params.users,
        )
result.summary()
"""),
    ("md", "## Throughput and latency over time"),
    ("code", "wb.show(wb.plots.throughput_over_time(result))"),
    ("code", "wb.show(wb.plots.latency_over_time(result))"),
    ("md", "## Latency by percentile (HDR spectrum)"),
    ("code", "wb.show(wb.plots.percentile_spectrum({params.endpoint: result}))"),
]


if __name__ == "__main__":
    notebook("01_quickstart", QUICKSTART)
