"""The L1-hit hot path against a bare FastAPI orjson endpoint, one uvicorn worker each.

Run: `.venv/bin/python benchmarks/hot_path.py --duration 5`. The bundled service with the cache on
answers `/users/{id}` from its in-process L1 after a warm-up; the bare app answers a constant
dict with ORJSONResponse. Same generator (the workbench's engine, cross-checked with wrk), same
connections. Goal: service / bare >= 0.8. The service is measured with the latency anatomy on
(what the workbench's runs use) and off, in alternating pairs: the median ratio is what timing
every request's stages costs on the hottest path (goal: >= 0.95).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from service.settings import ServiceSettings
from workbench import _process
from workbench._net import free_port, wait_for_port
from workbench.launcher import ServiceProcess
from workbench.stack import Stack

sys.path.insert(0, str(Path(__file__).parent))
from ladder import GENERATORS  # noqa: E402

BARE_APP = """
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse

app = FastAPI()
USER = {"id": 1, "name": "User 1", "email": "user1@example.com", "created_at": "2024-01-01T00:00:01Z"}


@app.get("/users/{user_id}", response_class=ORJSONResponse)
async def user(user_id: int) -> ORJSONResponse:
    return ORJSONResponse(USER)
"""


def main(argv: list[str] | None = None) -> int:
    """Load both apps with each generator and print the ratio."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--ids", type=int, default=1000, help="ids 1..N (all fit in L1)")
    parser.add_argument("--generators", default="engine,wrk")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating anatomy on/off pairs (default 5)"
    )
    args = parser.parse_args(argv)
    generators = [g for g in args.generators.split(",") if g]
    cached = ServiceSettings.optimized().replace(server="uvicorn", workers=1, preload=False)
    results: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as folder:
        app_file = Path(folder) / "bare_app.py"
        app_file.write_text(BARE_APP)
        port = free_port()
        bare = _process.spawn(
            [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level", "warning",
             "--no-access-log", "--loop", "uvloop", "--http", "httptools"],
            log=Path(folder) / "bare.log", cwd=Path(folder), env={**os.environ},
        )  # fmt: skip
        try:
            if not wait_for_port(port, timeout=20):
                raise SystemExit("the bare app did not start")
            for gen in generators:
                GENERATORS[gen](
                    f"http://127.0.0.1:{port}",
                    "/users/{id}",
                    max_id=args.ids,
                    duration=1,
                    connections=args.connections,
                )
                point = GENERATORS[gen](
                    f"http://127.0.0.1:{port}",
                    "/users/{id}",
                    max_id=args.ids,
                    duration=args.duration,
                    connections=args.connections,
                )
                results[("bare", gen)] = point.rps
        finally:
            _process.stop(bare)
    pairs: dict[str, list[float]] = {gen: [] for gen in generators}
    with (
        Stack(users=args.ids, progress=lambda _: None) as stack,
        ServiceProcess(cached, stack) as timed,
        ServiceProcess(cached.replace(anatomy=False), stack) as untimed,
    ):
        for gen in generators:
            for svc in (timed, untimed):  # warm-up fills each L1 with every id
                GENERATORS[gen](
                    svc.url, "/users/{id}", max_id=args.ids, duration=2,
                    connections=args.connections,
                )  # fmt: skip
            # Alternating pairs, the order swapped each round: the machine drifts by more than
            # the few percent measured here within a minute.
            for round_ in range(args.rounds):
                order = (timed, untimed) if round_ % 2 == 0 else (untimed, timed)
                rates = {}
                for svc in order:
                    time.sleep(0.2)
                    rates[svc is timed] = GENERATORS[gen](
                        svc.url, "/users/{id}", max_id=args.ids, duration=args.duration,
                        connections=args.connections,
                    ).rps  # fmt: skip
                pairs[gen].append(rates[True] / rates[False])
                results[("service", gen)] = max(results.get(("service", gen), 0.0), rates[True])
                results[("untimed", gen)] = max(results.get(("untimed", gen), 0.0), rates[False])
    print(
        f"{'generator':<10} {'bare req/s':>12} {'service L1 req/s':>18} {'service / bare':>15}"
        f" {'no anatomy req/s':>17} {'anatomy on / off':>17}"
    )
    for gen in generators:
        bare_rps, svc_rps = results[("bare", gen)], results[("service", gen)]
        untimed_rps = results[("untimed", gen)]
        ratios = sorted(pairs[gen])
        print(
            f"{gen:<10} {bare_rps:>12,.0f} {svc_rps:>18,.0f} {svc_rps / bare_rps:>15.2f}"
            f" {untimed_rps:>17,.0f} {statistics.median(ratios):>17.3f}"
            f"  (pairs {', '.join(f'{r:.3f}' for r in ratios)})"
        )
    print(
        "service req/s: the best of the rounds; anatomy on / off: the median of alternating pairs"
    )
    print("goals: service / bare >= 0.8 (anatomy on); anatomy on / off >= 0.95")
    return 0


if __name__ == "__main__":
    sys.exit(main())
