"""The L1-hit hot path against a bare FastAPI orjson endpoint, each served alone on one core.

Run: `.venv/bin/python benchmarks/hot_path.py --duration 5`. The bundled service (the optimized
preset on one worker, ids 1..1,000, each asked for once first so that every lookup is an L1 hit:
the output says how many were) answers `/users/{id}`; the bare app answers a constant dict with ORJSONResponse. The service's worker and
the bare app are each pinned alone on one core (only one of them is loaded at a time); this
process, the load generators (the workbench's engine and wrk) and the stack (PostgreSQL, Valkey:
idle during an L1-hit load) run on the other. Three servers are measured in rotating order each
round: the bare app, the service with the latency anatomy on (what the workbench's runs use) and
with it off; a ratio is taken within a round, and the median over rounds is printed with the
range (the machine drifts by more than the differences measured here within a minute).

Goals: service / bare >= 0.8 with the anatomy on; anatomy on / off >= 0.95. Beside the req/s,
the server's CPU time per request (less sensitive to other load on the machine than req/s).
`--profile S` samples each server for S seconds with py-spy under wrk and prints where its time
goes per layer (docs/hot_path.md has the profile before and after the cuts).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from service.settings import ServiceSettings
from workbench import _process
from workbench._net import free_port, wait_for_port
from workbench.launcher import ServiceProcess
from workbench.monitor import parse_metrics
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
PATH = "/users/{id}"

# Layers of a request, each named by the source files whose frames belong to it. A sample goes to
# the layer of its innermost frame that matches one: a Prometheus call made by the middleware is
# metrics, a uvicorn write reached through the response's send() is the ASGI server.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("metrics", ("prometheus_client/", "service/metrics.py")),
    ("anatomy", ("service/anatomy.py",)),
    ("cache lookup", ("service/cache.py",)),
    (
        "endpoint and response building",
        ("service/routes.py", "bare_app.py", "starlette/responses.py", "fastapi/responses.py"),
    ),
    (
        "routing and validation",
        (
            "starlette/routing.py",
            "fastapi/routing.py",
            "fastapi/dependencies/",
            "pydantic",
            "fastapi/_compat",
            "starlette/requests.py",
            "fastapi/params.py",
        ),
    ),  # fmt: skip
    (
        "middleware",
        (
            "service/app.py",
            "starlette/middleware/",
            "starlette/_exception_handler.py",
            "starlette/applications.py",
            "fastapi/middleware/",
            "fastapi/telemetry/",
            "fastapi/_body_limit.py",
            "fastapi/applications.py",
        ),
    ),  # fmt: skip
    ("ASGI server (uvicorn, httptools, uvloop)", ("uvicorn/", "service/protocol.py", "asyncio/")),
)
OTHER = "other"
_FRAME = re.compile(r"\((.*?):\d+\)$")


@dataclass(frozen=True, kw_only=True)
class Target:
    """A server under test: its URL and the processes that serve it."""

    name: str
    url: str
    pids: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class Measure:
    """One load run against one target."""

    rps: float
    cpu_us: float  # the server's CPU time per request
    load: float  # the machine's 1-minute load average as the run ended
    # garbage collections per 10,000 requests by generation (None: no /metrics with them)
    gc_per_10k: tuple[float, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class Profile:
    """Where a server's busy time went, per layer, under load."""

    samples: dict[str, int]
    cpu_us: float  # the server's CPU time per request while it was sampled

    def share(self, layer: str) -> float:
        """The fraction of the samples in layer."""
        total = sum(self.samples.values())
        return self.samples.get(layer, 0) / total if total else 0.0


class ProfileError(RuntimeError):
    """py-spy could not sample a server (not installed, or not allowed to attach)."""


def layer_of(stack: str) -> str:
    """The layer a sampled stack (py-spy's raw format: frames root first, ';' between) belongs to."""
    for frame in reversed(stack.split(";")):
        match = _FRAME.search(frame)
        path = match.group(1) if match else frame
        for name, parts in LAYERS:
            if any(part in path for part in parts):
                return name
    return OTHER


def cores() -> tuple[int, int] | None:
    """(server core, generator core), or None with fewer than two cores to use."""
    usable = sorted(os.sched_getaffinity(0))
    return (usable[0], usable[-1]) if len(usable) >= 2 else None


def pin(pid: int, core: int) -> None:
    """Pin a process, every thread of it and its children, to one core."""
    for proc in (psutil.Process(pid), *psutil.Process(pid).children(recursive=True)):
        for thread in proc.threads():
            os.sched_setaffinity(thread.id, {core})


def fill(target: Target, ids: int) -> None:
    """Ask for every id once: the service's L1 holds them all before it is measured."""
    with httpx.Client(base_url=target.url, timeout=10) as client:
        for user_id in range(1, ids + 1):
            client.get(PATH.format(id=user_id)).raise_for_status()


def l1_counts(target: Target) -> tuple[float, float]:
    """The service's L1 hits and lookups so far."""
    sample = parse_metrics(httpx.get(target.url + "/metrics", timeout=10).text)
    hits = sample.get("cache_hits_total{level=l1}", 0.0)
    return hits, hits + sample.get("cache_misses_total{level=l1}", 0.0)


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of the processes so far."""
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def gc_collections(target: Target) -> tuple[float, ...] | None:
    """The server's garbage collections so far by generation (prometheus_client's default
    collector, on a single process's /metrics), or None where it has none (the bare app)."""
    answer = httpx.get(target.url + "/metrics", timeout=10)
    sample = parse_metrics(answer.text) if answer.status_code == 200 else {}
    keys = [f"python_gc_collections_total{{generation={g}}}" for g in range(3)]
    return tuple(sample[key] for key in keys) if all(key in sample for key in keys) else None


def measure(target: Target, gen: str, *, duration: float, ids: int, connections: int) -> Measure:
    """Load target with generator gen and measure its req/s, CPU and collections per request."""
    gc_before = gc_collections(target)
    before = cpu_seconds(target.pids)
    point = GENERATORS[gen](
        target.url, PATH, max_id=ids, duration=duration, connections=connections
    )
    spent = cpu_seconds(target.pids) - before
    gc_after = gc_collections(target)
    requests = max(1, point.requests)
    return Measure(
        rps=point.rps,
        cpu_us=spent / requests * 1e6,
        load=os.getloadavg()[0],
        gc_per_10k=None
        if gc_before is None or gc_after is None
        else tuple((a - b) / requests * 1e4 for a, b in zip(gc_after, gc_before, strict=True)),
    )


def profile(
    target: Target, *, seconds: float, ids: int, connections: int, out: Path, rate: int = 250
) -> Profile:
    """Sample target's worker (its last process) with py-spy for `seconds` under wrk; per layer."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "--pid", str(target.pids[-1]), "--duration", f"{seconds:g}",
            "--rate", str(rate), "--nonblocking", "--format", "raw", "--output", str(out)]  # fmt: skip
    try:
        sampler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ProfileError(f"py-spy could not start ({exc}); pip install py-spy") from None
    time.sleep(0.5)  # attached before the load begins: the whole window is under load
    before = cpu_seconds(target.pids)
    point = GENERATORS["wrk"](
        target.url, PATH, max_id=ids, duration=seconds, connections=connections
    )
    spent = cpu_seconds(target.pids) - before
    _, err = sampler.communicate(timeout=seconds + 30)
    if sampler.returncode != 0 or not out.exists():
        raise ProfileError(f"py-spy failed (exit {sampler.returncode}): {err.decode()[-500:]}")
    samples: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[layer_of(stack)] += int(count)
    return Profile(samples=dict(samples), cpu_us=spent / max(1, point.requests) * 1e6)


def profile_table(profiles: dict[str, Profile]) -> str:
    """Per layer: share of samples and CPU µs per request of each profiled server."""
    names = list(profiles)
    head = f"{'layer':<42}" + "".join(f" {name + ' %':>14} {'µs/req':>8}" for name in names)
    lines = [head]
    for layer in [*(name for name, _ in LAYERS), OTHER]:
        row = f"{layer:<42}"
        for name in names:
            share = profiles[name].share(layer)
            row += f" {100 * share:>14.1f} {share * profiles[name].cpu_us:>8.1f}"
        lines.append(row)
    lines.append(
        f"{'total (CPU per request)':<42}"
        + "".join(f" {100.0:>14.1f} {profiles[n].cpu_us:>8.1f}" for n in names)
    )
    return "\n".join(lines)


def _collections(measures: Sequence[Measure]) -> str:
    """Median garbage collections per 10,000 requests by generation: a burst of requests that
    leaves a few more objects alive tips gen0 over its threshold, and each full collection then
    walks the app's ~115,000 long-lived objects (docs/anatomy.md, "What it costs")."""
    rows = [m.gc_per_10k for m in measures if m.gc_per_10k is not None]
    if not rows:
        return "-"
    return "/".join(f"{statistics.median(row[g] for row in rows):.1f}" for g in range(3))


def _spread(values: Sequence[float], fmt: str = ".3f") -> str:
    ordered = sorted(values)
    return f"{statistics.median(ordered):{fmt}} ({ordered[0]:{fmt}}-{ordered[-1]:{fmt}})"


def main(argv: list[str] | None = None) -> int:
    """Load the bare app and the service (anatomy on and off) in rotating rounds; print ratios."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--ids", type=int, default=1000, help="ids 1..N (all fit in L1)")
    parser.add_argument("--generators", default="engine,wrk")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the servers, each in turn")
    parser.add_argument(
        "--profile",
        type=float,
        default=5.0,
        metavar="S",
        help="py-spy each server for S s under wrk (0: no profile)",
    )
    parser.add_argument("--profile-dir", type=Path, help="keep py-spy's raw stacks here")
    parser.add_argument(
        "--before", type=Path, metavar="DIR",
        help="also the service (anatomy on) imported from DIR, an older checkout's folder "
        "holding service/ (e.g. `git archive main service | tar -x -C DIR`), in the same rounds",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a service setting on top of the optimized preset (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    generators = [g for g in args.generators.split(",") if g]
    extra = dict(item.split("=", 1) for item in args.set)
    # The optimized preset on one worker (one worker is served without gunicorn's master
    # unless gunicorn_one_worker is set); entries that outlive the benchmark (the preset's
    # 300 s, less up to 20% of jitter, would start expiring within its run).
    service = ServiceSettings.optimized().replace(workers=1, preload=False, l2_ttl=3600, **extra)
    placement = cores()
    if placement is None:
        print("one core only: nothing pinned (servers and generators share it)")
    else:
        server_core, gen_core = placement
        pin(os.getpid(), gen_core)  # inherited by the generators and the stack started below
        print(
            f"pinned: each server's worker alone on core {server_core}; the generators, this "
            f"process and the stack (PostgreSQL, Valkey) on core {gen_core}"
        )
    load_kw = {"ids": args.ids, "connections": args.connections}
    with tempfile.TemporaryDirectory() as folder:
        app_file = Path(folder) / "bare_app.py"
        app_file.write_text(BARE_APP)
        port = free_port()
        bare_proc = _process.spawn(
            [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level", "warning",
             "--no-access-log", "--loop", "uvloop", "--http", "httptools"],
            log=Path(folder) / "bare.log", cwd=Path(folder), env={**os.environ},
        )  # fmt: skip
        try:
            if not wait_for_port(port, timeout=20):
                raise SystemExit("the bare app did not start")
            # `python -m service` puts its working folder first on sys.path: not this checkout.
            os.chdir(folder)
            with (
                Stack(users=args.ids, progress=lambda _: None) as stack,
                ServiceProcess(service, stack) as on,
                ServiceProcess(service.replace(anatomy=False), stack) as off,
                contextlib.ExitStack() as more,
            ):
                targets = [
                    Target(name="bare", url=f"http://127.0.0.1:{port}", pids=(bare_proc.pid,)),
                    Target(name="service", url=on.url, pids=tuple(on.pids())),
                    Target(name="no anatomy", url=off.url, pids=tuple(off.pids())),
                ]
                if args.before is not None:
                    os.environ["PYTHONPATH"] = str(args.before.resolve())
                    old = more.enter_context(ServiceProcess(service, stack))
                    del os.environ["PYTHONPATH"]
                    targets.append(Target(name="before", url=old.url, pids=tuple(old.pids())))
                if placement is not None:
                    for target in targets:
                        for pid in target.pids:
                            pin(pid, placement[0])
                for target in targets[1:]:
                    fill(target, args.ids)
                before = {t.name: l1_counts(t) for t in targets[1:]}
                _run(targets, generators, args, load_kw)
                for target in targets[1:]:
                    (hits_now, lookups_now), (hits_then, lookups_then) = (
                        l1_counts(target),
                        before[target.name],
                    )
                    hits, lookups = hits_now - hits_then, lookups_now - lookups_then
                    print(f"{target.name}: L1 hits {hits:,.0f} of {lookups:,.0f} lookups "
                          f"({100 * hits / max(1, lookups):.2f}%)")  # fmt: skip
                if args.profile > 0:
                    out_dir = args.profile_dir or Path(folder)
                    out_dir.mkdir(parents=True, exist_ok=True)
                    try:
                        profiles = {
                            t.name: profile(
                                t, seconds=args.profile, out=out_dir / f"{t.name}.txt", **load_kw
                            )
                            for t in targets  # "no anatomy" too: the anatomy's cost, layer by layer
                        }
                    except ProfileError as exc:
                        print(f"\nno per-layer profile: {exc}")
                        return 0
                    print(f"\nper-layer profile (py-spy, wrk, {args.profile:g} s each; load "
                          f"average {os.getloadavg()[0]:.1f}); before the cuts: docs/hot_path.md")  # fmt: skip
                    print(profile_table(profiles))
        finally:
            _process.stop(bare_proc)
    return 0


def _run(
    targets: list[Target], generators: list[str], args: argparse.Namespace, load_kw: dict[str, int]
) -> None:
    bare, on, off = targets[:3]
    for gen in generators:
        for target in targets:  # warm-up: connections, caches of the interpreter
            measure(target, gen, duration=2, **load_kw)
        runs: dict[str, list[Measure]] = {t.name: [] for t in targets}
        ratios: dict[str, list[float]] = {"on/bare": [], "off/bare": [], "on/off": []}
        for round_ in range(args.rounds):
            shift = round_ % len(targets)
            order = targets[shift:] + targets[:shift]
            got: dict[str, Measure] = {}
            for target in order:
                time.sleep(0.2)
                got[target.name] = measure(target, gen, duration=args.duration, **load_kw)
                runs[target.name].append(got[target.name])
            ratios["on/bare"].append(got[on.name].rps / got[bare.name].rps)
            ratios["off/bare"].append(got[off.name].rps / got[bare.name].rps)
            ratios["on/off"].append(got[on.name].rps / got[off.name].rps)
            for extra in targets[3:]:
                ratios.setdefault(f"{extra.name}/bare", []).append(
                    got[extra.name].rps / got[bare.name].rps
                )
        loads = [m.load for ms in runs.values() for m in ms]
        print(f"\n{gen}: {args.rounds} rounds of {args.duration:g} s, {args.connections} "
              f"connections; load average (1 min) {min(loads):.1f}-{max(loads):.1f}")  # fmt: skip
        print(f"{'server':<12} {'req/s':>24} {'CPU µs/req':>26}   GC per 10k req (gen 0/1/2)")
        for target in targets:
            ms = runs[target.name]
            print(f"{target.name:<12} {_spread([m.rps for m in ms], ',.0f'):>24} "
                  f"{_spread([m.cpu_us for m in ms], '.1f'):>26}   {_collections(ms)}")  # fmt: skip
        cpu = {t.name: statistics.median(m.cpu_us for m in runs[t.name]) for t in targets}
        print(f"service / bare, anatomy on:  {_spread(ratios['on/bare'])}"
              f"   by CPU per request: {cpu[bare.name] / cpu[on.name]:.3f}   (goal >= 0.8)")  # fmt: skip
        print(f"service / bare, anatomy off: {_spread(ratios['off/bare'])}"
              f"   by CPU per request: {cpu[bare.name] / cpu[off.name]:.3f}")  # fmt: skip
        print(f"anatomy on / off:            {_spread(ratios['on/off'])}"
              f"   by CPU per request: {cpu[off.name] / cpu[on.name]:.3f}   (goal >= 0.95)")  # fmt: skip
        for extra in targets[3:]:
            print(f"{extra.name + ' / bare:':<29}{_spread(ratios[extra.name + '/bare'])}"
                  f"   by CPU per request: {cpu[bare.name] / cpu[extra.name]:.3f}")  # fmt: skip
    print("\nratios: the median over rounds of the servers measured in the same round (range)")


if __name__ == "__main__":
    sys.exit(main())
