"""A tiny FastAPI service with Prometheus /metrics that the tests start themselves (not the workbench)."""

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

REQUESTS = Counter("http_requests_total", "Requests answered", ["path"])
IN_FLIGHT = Gauge("http_requests_in_flight", "Requests being answered")

app = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    """An item by id."""
    with IN_FLIGHT.track_inprogress():
        REQUESTS.labels(path="/items/{item_id}").inc()
        return {"id": item_id}


@app.get("/metrics")
def metrics() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
