"""The optimization ladder: each step of service.settings.ladder() loaded, with ratios to naive.

Run: `.venv/bin/python benchmarks/ladder.py --duration 5`. Each step and endpoint is loaded
closed-loop by the workbench's engine and, as a cross-check, by wrk (same connections, same
ids); `--capacity` adds each step's max req/s at P95 <= 50 ms and P95/P99 at a fixed rate
(workbench.climb, open loop, coordinated-omission corrected).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from service.settings import ServiceSettings, ladder
from workbench.launcher import ServiceProcess
from workbench.stack import Stack

ENDPOINTS = ("/users/{id}", "/users/{id}/expensive-computation")
DEFAULT_USERS = 1_000  # ids drawn uniformly from 1..users; caches can warm up in seconds
# Warm-up goes on in chunks until the L1 hit ratio of a chunk moves less than this (0..1) from the
# last one, capped at WARMUP_CAP_S: measured once after a fixed 1 s, the first generator met a
# colder per-worker L1 than the second (+workers: engine 2,795 req/s at L1 still filling, then wrk
# 5,331, then the engine again 5,319 -- the "engine 0.53 of wrk" was the order, not the engine).
STEADY_HIT = 0.02
WARMUP_CAP_S = 30.0


@dataclass(frozen=True, kw_only=True)
class LoadPoint:
    """What one load run measured."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


# (base_url, path template with {id}, ids 1..max_id, duration s, connections) -> LoadPoint
Generator = Callable[..., LoadPoint]

_WRK_SCRIPT = """
local max_id = tonumber(os.getenv("BENCH_MAX_ID"))
local template = os.getenv("BENCH_PATH")
math.randomseed(os.time())
request = function()
  local path = template:gsub("{id}", tostring(math.random(1, max_id)))
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p95":%d,"p99":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def wrk_generator(
    base_url: str, path: str, *, max_id: int, duration: float, connections: int = 64
) -> LoadPoint:
    """Closed-loop load by wrk (one thread), random ids, latency percentiles from its histogram."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    try:
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s"]
        argv += ["--timeout", "5s", "-s", script.name, base_url]
        env = {"BENCH_MAX_ID": str(max_id), "BENCH_PATH": path, "PATH": "/usr/bin:/bin"}
        out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    finally:
        Path(script.name).unlink(missing_ok=True)
    data = json.loads(out.strip().splitlines()[-1])
    return LoadPoint(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"],
        p50_ms=data["p50"] / 1000,
        p95_ms=data["p95"] / 1000,
        p99_ms=data["p99"] / 1000,
    )


def engine_generator(
    base_url: str, path: str, *, max_id: int, duration: float, connections: int = 64
) -> LoadPoint:
    """Closed-loop load by the workbench's own engine (raw transport), random ids."""
    from workbench.load import run_load

    result = run_load(
        base_url + path, connections=connections, duration=duration, warmup=0, id_max=max_id,
        processes=1, progress=False,
    )  # fmt: skip
    latency = result.percentiles_ms("latency")
    return LoadPoint(
        requests=result.completed,
        seconds=result.duration_s,
        errors=result.errors,
        p50_ms=latency["p50"],
        p95_ms=latency["p95"],
        p99_ms=latency["p99"],
    )


GENERATORS: dict[str, Generator] = {"engine": engine_generator, "wrk": wrk_generator}


@dataclass(frozen=True, kw_only=True)
class Row:
    """One step x endpoint of the ladder."""

    step: str
    endpoint: str
    generator: str
    point: LoadPoint
    hit_ratio: float | None = None  # L1+L2 hits / lookups during the point; None: no cache
    l1_ratio: float | None = None  # L1 hits / L1 lookups during the point; None: no cache
    warmup_s: float = 0.0  # warm-up before the step's first point (until the L1 ratio was steady)
    steady: bool = True  # False: the warm-up reached WARMUP_CAP_S with the L1 ratio still moving
    queries_per_request: float = 0.0


def run_ladder(
    stack: Stack,
    *,
    steps: Sequence[tuple[str, ServiceSettings]],
    endpoints: Sequence[str] = ENDPOINTS,
    duration: float = 5.0,
    warmup: float = 1.0,
    connections: int = 64,
    generators: Sequence[str] = ("engine", "wrk"),
    progress: Callable[[str], None] = print,
) -> list[Row]:
    """Start the service for each step and load each endpoint once per generator, after a warm-up
    that lasts until the service's L1 hit ratio is steady (chunks of `warmup` s, capped)."""
    rows = []
    for name, settings in steps:
        with ServiceProcess(settings, stack) as svc:
            for endpoint in endpoints:
                load = dict(max_id=stack.users, connections=connections)
                warmed, steady = _warm_up(
                    svc, endpoint, GENERATORS[generators[0]], chunk=warmup, **load
                )
                for gen in generators:
                    before = _counters(svc.metrics())
                    point = GENERATORS[gen](svc.url, endpoint, duration=duration, **load)
                    delta = _delta(before, _counters(svc.metrics()))
                    row = Row(
                        step=name,
                        endpoint=endpoint,
                        generator=gen,
                        point=point,
                        hit_ratio=_hit_ratio(delta) if settings.cache else None,
                        l1_ratio=_l1_ratio(delta) if settings.cache else None,
                        warmup_s=warmed,
                        steady=steady,
                        queries_per_request=delta["queries"] / max(1, point.requests),
                    )
                    progress(f"{name:<16} {endpoint:<36} {gen:<6} {point.rps:>9,.0f} req/s")
                    rows.append(row)
    return rows


def _warm_up(
    svc: ServiceProcess, endpoint: str, generator: Generator, *, chunk: float, **load: int
) -> tuple[float, bool]:
    """Load the endpoint in chunks until the L1 hit ratio is steady: (seconds spent, steady).

    A chunk after the first lasts long enough to draw about every id once (at the rate the last
    chunk measured): at a low rate, a fixed short chunk raises a still-filling L1's ratio by less
    than STEADY_HIT and would pass for steady.
    """
    if chunk <= 0:
        return 0.0, False
    spent, last, seconds = 0.0, None, chunk
    while spent < WARMUP_CAP_S:
        before = _counters(svc.metrics())
        point = generator(svc.url, endpoint, duration=seconds, **load)
        spent += seconds
        ratio = _l1_ratio(_delta(before, _counters(svc.metrics())))
        if ratio is None or (last is not None and abs(ratio - last) < STEADY_HIT):
            return spent, True
        last = ratio
        every_id = load["max_id"] / point.rps if point.rps else chunk
        seconds = min(max(chunk, every_id), WARMUP_CAP_S - spent)
    return spent, False


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counter increments between two /metrics reads."""
    return {k: after[k] - before[k] for k in after}


def _hit_ratio(delta: dict[str, float]) -> float | None:
    """L1+L2 hits over lookups (an L1 miss looks up L2)."""
    lookups = delta["hits"] + delta["l2_misses"]
    return delta["hits"] / lookups if lookups else None


def _l1_ratio(delta: dict[str, float]) -> float | None:
    """L1 hits over L1 lookups; None when the service looked nothing up (no cache)."""
    lookups = delta["l1_hits"] + delta["l1_misses"]
    return delta["l1_hits"] / lookups if lookups else None


def _counters(page: str) -> dict[str, float]:
    """Cache hits (L1+L2, and L1 alone), L1 and L2 misses and database queries from /metrics."""
    out = {"hits": 0.0, "l2_misses": 0.0, "queries": 0.0, "l1_hits": 0.0, "l1_misses": 0.0}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            level = sample.labels.get("level")
            if sample.name == "cache_hits_total" and level in ("l1", "l2"):
                out["hits"] += sample.value
                if level == "l1":
                    out["l1_hits"] += sample.value
            elif sample.name == "cache_misses_total" and level == "l1":
                out["l1_misses"] += sample.value
            elif sample.name == "cache_misses_total" and level == "l2":
                out["l2_misses"] += sample.value
            elif sample.name == "db_queries_total":
                out["queries"] += sample.value
    return out


def table(rows: Sequence[Row]) -> str:
    """A text table with the ratio of each step's throughput to naive's, per endpoint."""
    base = {(r.endpoint, r.generator): r.point.rps for r in rows if r.step == rows[0].step}
    lines = [
        f"{'step':<16} {'endpoint':<36} {'gen':<6} {'req/s':>9} {'x naive':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7} {'hit %':>6} {'L1 %':>5} {'q/req':>6} {'warm s':>6}"
    ]
    for row in rows:
        p = row.point
        key = (row.endpoint, row.generator)
        ratio = p.rps / base[key] if base.get(key) else float("nan")
        lines.append(
            f"{row.step:<16} {row.endpoint:<36} {row.generator:<6} {p.rps:>9,.0f} {ratio:>8.2f} "
            f"{p.p50_ms:>8.2f} {p.p95_ms:>8.2f} {p.p99_ms:>8.2f} {p.errors:>7} "
            f"{_percent(row.hit_ratio):>6} {_percent(row.l1_ratio):>5} "
            f"{row.queries_per_request:>6.2f} {row.warmup_s:>5.0f}{' ' if row.steady else '*'}"
        )
    if not all(r.steady for r in rows):
        lines.append(
            f"* warm-up stopped at {WARMUP_CAP_S:.0f} s with the L1 hit ratio still moving"
        )
    engine = {(r.step, r.endpoint): r.point.rps for r in rows if r.generator == "engine"}
    wrk = {(r.step, r.endpoint): r.point.rps for r in rows if r.generator == "wrk"}
    shared = [k for k in engine if k in wrk and wrk[k]]
    if shared:
        lines.append("")
        lines.append("engine / wrk throughput on the same step and endpoint (cross-check):")
        for key in shared:
            lines.append(f"  {key[0]:<16} {key[1]:<36} {engine[key] / wrk[key]:>6.2f}")
    return "\n".join(lines)


def _percent(ratio: float | None) -> str:
    """A ratio as a whole percent, '-' when there is none."""
    return "-" if ratio is None else f"{100 * ratio:.0f}"


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the ladder, print the table (and optionally write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=DEFAULT_USERS)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds per warm-up chunk; warm-up repeats chunks until the L1 hit ratio is steady",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--steps", default="", help="comma-separated step names (default all)")
    parser.add_argument(
        "--endpoints",
        default=",".join(ENDPOINTS),
        help="comma-separated path templates with {id}, e.g. /users/{id}/profile",
    )
    parser.add_argument(
        "--generators", default="engine,wrk", help="engine, wrk or both (cross-check)"
    )
    parser.add_argument(
        "--capacity", action="store_true", help="also search each step's max req/s at P95 <= 50 ms"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if any("{id}" not in e for e in args.endpoints.split(",") if e):
        parser.error("every endpoint needs an {id} placeholder")
    steps = ladder()
    if args.steps:
        wanted = args.steps.split(",")
        unknown = set(wanted) - {name for name, _ in steps}
        if unknown:
            parser.error(f"unknown steps {sorted(unknown)}; known: {[n for n, _ in steps]}")
        steps = [step for step in steps if step[0] in wanted]
    with Stack(users=args.users) as stack:
        rows = run_ladder(
            stack,
            steps=steps,
            endpoints=[e for e in args.endpoints.split(",") if e],
            duration=args.duration,
            warmup=args.warmup,
            connections=args.connections,
            generators=[g for g in args.generators.split(",") if g],
        )
        climbed = None
        if args.capacity:
            from workbench.climb import climb, shown

            climbed = climb(
                stack, slo="p95=50ms,errors=1%", duration=args.duration, steps=[n for n, _ in steps]
            )
    print(table(rows))
    if climbed is not None:
        print()
        print("capacity under P95 <= 50 ms (open loop, engine):")
        print(shown(climbed).to_string(index=False))
        print("\n".join(climbed["mechanism"]))
    if args.json:
        payload = [
            {
                "step": r.step,
                "endpoint": r.endpoint,
                "generator": r.generator,
                **asdict(r.point),
                "rps": r.point.rps,
                "hit_ratio": r.hit_ratio,
                "l1_ratio": r.l1_ratio,
                "warmup_s": r.warmup_s,
                "steady": r.steady,
                "queries_per_request": r.queries_per_request,
            }
            for r in rows
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
