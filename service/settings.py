"""ServiceSettings: every knob of the bundled service, shared by the service and the workbench."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

ENV_PREFIX = "SVC_"

SERIALIZERS = ("pydantic", "orjson")
UPSTREAM_MODES = ("shared", "blocking")
SERVERS = ("uvicorn", "gunicorn")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

# Choices for string settings; a value outside them is rejected with the list.
_CHOICES: dict[str, tuple[str, ...]] = {
    "serializer": SERIALIZERS,
    "upstream_mode": UPSTREAM_MODES,
    "server": SERVERS,
    "log_level": LOG_LEVELS,
}
# Allowed range (inclusive) of each numeric setting. Upper bounds catch values that can only be
# mistakes (a typo's extra zeros): more than any machine this runs on could use.
_BOUNDS: dict[str, tuple[float, float]] = {
    "pool_size": (1, 1000),
    "max_overflow": (0, 1000),
    "pool_timeout": (0.001, 3600),
    "query_timeout": (0.001, 3600),
    "pool_recycle": (-1, 7 * 86_400),
    "read_pool_size": (1, 1000),
    "read_max_overflow": (0, 1000),
    "model_cache_ttl": (0, 7 * 86_400),
    "redis_max_connections": (1, 10_000),
    "upstream_timeout": (0.001, 3600),
    "upstream_max_connections": (1, 10_000),
    "batch_size": (1, 10_000),
    "batch_flush_interval": (0, 60),
    "batch_max_pending": (1, 1_000_000),
    "l1_size": (1, 10_000_000),
    "l2_ttl": (1, 7 * 86_400),
    "l2_bypass_below": (0, 1),
    "compute_cost": (0, 1_000_000),
    "workers": (1, 64),
    "worker_connections": (1, 100_000),
    "max_requests": (0, 10_000_000),
    "max_requests_jitter": (0, 10_000_000),
    "keepalive": (0, 3600),
    "timeout": (1, 3600),
    "backlog": (1, 65_535),
    "metrics_flush_interval": (0, 60),
}


class SettingsError(ValueError):
    """A setting with a bad name or value: its field, and the reason (what is allowed)."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name  # the field (or environment variable)
        self.reason = message
        super().__init__(f"{name}: {message}")


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """Every knob of the bundled service; frozen and validated on creation."""

    # Database pool (SQLAlchemy's defaults are 5 / 10 / 30 s).
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    # Seconds a query, or opening a connection, may take before the request gets a 503
    # (a frozen or unreachable database would otherwise hold requests and pool slots for good).
    query_timeout: float = 5.0
    pool_pre_ping: bool = False
    pool_recycle: int = -1
    expire_on_commit: bool = True
    # Read/write split: a read engine with its own pool; empty URL = the primary.
    read_split: bool = False
    read_pool_size: int = 5
    read_max_overflow: int = 10
    # Reads without BEGIN/ROLLBACK around each query (SQLAlchemy otherwise opens a transaction).
    read_autocommit: bool = False
    # Prepared statements planned once (PostgreSQL's plan_cache_mode=force_generic_plan).
    generic_plans: bool = False
    # Serialization and the TTL object cache.
    serializer: str = "pydantic"
    model_cache: bool = False
    model_cache_ttl: float = 300.0
    # Async correctness.
    upstream_mode: str = "blocking"
    upstream_timeout: float = 2.0
    # Shared client: connections and concurrent calls (more wait outside httpx's pool queue).
    upstream_max_connections: int = 100
    redis_max_connections: int = 50
    # Request batcher; a flush interval of 0 sends each event-loop iteration's lookups together.
    batcher: bool = False
    batch_size: int = 50
    batch_flush_interval: float = 0.1
    batch_max_pending: int = 10_000
    # Multi-level cache.
    cache: bool = False
    l1_size: int = 10_000
    l2_ttl: int = 300
    invalidation: bool = True
    # Fill L2 in the background: a miss's response does not wait for the Redis SET.
    l2_write_behind: bool = False
    # Skip most L2 reads while fewer than this share of them hit (0: always read L2).
    l2_bypass_below: float = 0.0
    # CPU cost of /expensive-computation, in hashing rounds.
    compute_cost: int = 2_000
    # Server.
    server: str = "uvicorn"
    workers: int = 1
    worker_connections: int = 1000
    max_requests: int = 0
    max_requests_jitter: int = 0
    keepalive: int = 5
    preload: bool = False
    timeout: int = 30
    backlog: int = 2048
    log_level: str = "warning"
    # server="gunicorn" with one worker: through gunicorn's master too (it replaces a worker that
    # dies or hangs past `timeout`); off, uvicorn serves it alone, its metrics in memory rather
    # than in multiprocess files (max_requests > 0 keeps gunicorn: it replaces the worker).
    gunicorn_one_worker: bool = False
    # Time each request's stages (service/anatomy.py); the workbench's runs read them.
    anatomy: bool = True
    # Per-request metrics (counts, latency, cache hits) added up in memory and moved into
    # Prometheus this often, on every scrape, and with several workers when one goes idle;
    # 0: at the end of every request (a lock per value, ~5% of an L1-hit request).
    metrics_flush_interval: float = 0.1
    # Move every object alive after start-up (the imported app, its libraries: ~115k) out of the
    # garbage collector's reach (gc.freeze): a full collection then walks only what requests
    # allocate, not the whole heap (tens of ms each, ~30 us per request at 256 connections).
    gc_freeze: bool = False

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for field in fields(self):
            value = getattr(self, field.name)
            coerced = _coerce(field.name, value, hints[field.name])
            if coerced is not value:
                object.__setattr__(self, field.name, coerced)
        if self.max_requests_jitter > self.max_requests and self.max_requests > 0:
            raise SettingsError(
                "max_requests_jitter",
                f"must be <= max_requests ({self.max_requests}), got {self.max_requests_jitter}",
            )
        if self.batch_size > self.batch_max_pending:
            raise SettingsError(
                "batch_size",
                f"must be <= batch_max_pending ({self.batch_max_pending}), got {self.batch_size}",
            )
        if self.read_autocommit and not self.read_split:
            raise SettingsError("read_autocommit", "needs read_split (a read engine of its own)")
        if self.server == "uvicorn" and self.workers > 1 and self.preload:
            raise SettingsError("preload", "only applies to server='gunicorn'")

    # --- construction -------------------------------------------------------------------
    @classmethod
    def names(cls) -> list[str]:
        """The names of all settings."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], *, base: ServiceSettings | None = None
    ) -> ServiceSettings:
        """Settings from a dict (notebooks, sweeps); unknown names are rejected with the valid ones."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise SettingsError(
                unknown[0], f"unknown setting; valid names are: {', '.join(cls.names())}"
            )
        return dataclasses.replace(base or cls(), **dict(values))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Settings from SVC_* environment variables (how the service process reads them)."""
        env = os.environ if environ is None else environ
        values = {
            name: env[ENV_PREFIX + name.upper()]
            for name in cls.names()
            if ENV_PREFIX + name.upper() in env
        }
        try:
            return cls.from_dict(values)
        except SettingsError as exc:  # name the variable the user set, not the field
            variable = ENV_PREFIX + exc.name.upper()
            raise SettingsError(variable, exc.reason) from None

    def to_env(self) -> dict[str, str]:
        """The SVC_* environment variables that reproduce these settings."""
        out = {}
        for name, value in self.to_dict().items():
            text = ("1" if value else "0") if isinstance(value, bool) else str(value)
            out[ENV_PREFIX + name.upper()] = text
        return out

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of every setting."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ServiceSettings:
        """A copy with some settings changed (validated)."""
        return self.from_dict(changes, base=self)

    def diff(self, other: ServiceSettings | None = None) -> dict[str, Any]:
        """Settings that differ from other (default: the defaults)."""
        other = other or ServiceSettings()
        return {k: v for k, v in self.to_dict().items() if getattr(other, k) != v}

    # --- presets ------------------------------------------------------------------------
    @classmethod
    def naive(cls) -> ServiceSettings:
        """The baseline everyone copies: default pool, Pydantic, blocking upstream, no cache, one worker."""
        return cls()

    @classmethod
    def optimized(cls) -> ServiceSettings:
        """Every optimization of the story switched on."""
        return ladder()[-1][1]

    def max_db_connections(self) -> int:
        """Connections this service may open to the database at most (all workers, both engines)."""
        per_worker = self.pool_size + self.max_overflow
        if self.read_split:
            per_worker += self.read_pool_size + self.read_max_overflow
        return self.workers * per_worker

    def check_database_limit(self, max_connections: int, *, reserved: int = 3) -> None:
        """Raise SettingsError when the pools could open more connections than the database allows."""
        need = self.max_db_connections()
        if need > max_connections - reserved:
            raise SettingsError(
                "pool_size",
                f"workers x (pool_size + max_overflow{' + read pool' if self.read_split else ''}) "
                f"= {need} exceeds the database's max_connections ({max_connections}, "
                f"{reserved} reserved); lower pool_size/max_overflow/workers",
            )


def ladder() -> list[tuple[str, ServiceSettings]]:
    """The optimization ladder: naive, then each step of the story added on top of the previous."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("naive", {}),
        (
            "+pool",
            {
                "pool_size": 20,
                "max_overflow": 20,
                # No pool_pre_ping: it costs a round trip per checkout (measured: naive P95 at
                # 300 req/s 3 -> 104 ms with it); pool_recycle retires old connections instead.
                "pool_recycle": 3600,
                "expire_on_commit": False,
                "read_split": True,
                "read_pool_size": 20,
                "read_max_overflow": 20,
                "read_autocommit": True,
            },
        ),
        ("+serialization", {"serializer": "orjson", "model_cache": True}),
        # The account's 0.1 s flush adds up to 100 ms to every lookup at low concurrency, and
        # even 2 ms taxes every request when there is nothing to batch; flushing once per
        # event-loop iteration (interval 0) costs nothing alone and gathers lookups under load.
        (
            "+async",
            {
                "upstream_mode": "shared",
                "upstream_max_connections": 10,
                # the batched lookups' `id = ANY($1)` joins would be re-planned at every call
                "generic_plans": True,
                "batcher": True,
                "batch_flush_interval": 0.0,
            },
        ),
        # A Redis read saves a database round trip only when it hits: below 20% hits (uniform ids
        # over many users, a cold cache) most L1 misses skip it; L2 still fills, off the path.
        ("+cache", {"cache": True, "l2_write_behind": True, "l2_bypass_below": 0.2}),
        # preload: the app is imported once in the master, so workers fork ready (starts ~2x faster).
        # gc_freeze: full collections skip the started heap (L1-hits at 256 connections, one
        # worker: 252 -> 190 us of CPU per request, benchmarks/hot_path.py --set gc_freeze=true).
        ("+workers", {"server": "gunicorn", "workers": 2, "preload": True, "gc_freeze": True}),
    ]
    out: list[tuple[str, ServiceSettings]] = []
    current = ServiceSettings()
    for name, changes in steps:
        current = current.replace(**changes)
        out.append((name, current))
    return out


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """Check one setting's value against its type and bounds; convert strings from env/CLI."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise SettingsError(name, f"must be true or false, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise SettingsError(name, f"must be a string, got {value!r}")
        choices = _CHOICES.get(name)
        if choices and value not in choices:
            raise SettingsError(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value
    if kind in (int, float):
        low, high = _BOUNDS.get(name, (-math.inf, math.inf))
        label = "an integer" if kind is int else "a number"
        wanted = f"must be {label} from {_text(low)} to {_text(high)}, got {value!r}"
        if isinstance(value, bool):
            raise SettingsError(name, wanted)
        try:
            number = kind(value) if isinstance(value, str) else value
            if kind is int and isinstance(number, float):
                if not number.is_integer():
                    raise ValueError
                number = int(number)
            if not isinstance(number, (int, float)):
                raise ValueError
        except (ValueError, OverflowError):
            raise SettingsError(name, wanted) from None
        # nan compares false with everything: it must be refused explicitly, as must inf
        if not math.isfinite(number) or not low <= number <= high:
            raise SettingsError(name, wanted)
        return kind(number) if kind is float else number
    return value


def _text(bound: float) -> str:
    """A bound as a person writes it: 3600, 0.001, 604800."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"
