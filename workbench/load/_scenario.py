"""Scenario: weighted endpoints and an id distribution, pre-encoded into raw HTTP/1.1 requests."""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from workbench._errors import InputError, allowed, positive_float, positive_int

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DISTRIBUTIONS = ("uniform", "zipf", "seed")
# "seed": the traffic of the account the workbench reproduces, whose busiest endpoints had an
# 85% cache hit ratio: 85% of requests go to a hot set of 0.1% of the ids (at least 10),
# which fits any L1 and is warm within a second; the rest are uniform over all ids.
SEED_HOT_SHARE = 0.85
SEED_HOT_FRACTION = 0.001
SEED_HOT_MIN = 10
DEFAULT_ID_MAX = 1000
DEFAULT_POOL_SIZE = 4096
MAX_POOL_SIZE = 131_072
_SENTINEL_ID = 918_273_645_546_372_819  # stands for {id} in encoded templates
USER_AGENT = "workbench-load"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ENDPOINT_FIELDS = ("method", "path", "weight", "body", "headers")
_SCENARIO_FIELDS = ("endpoints", "ids", "id_max", "zipf_s", "seed", "pool_size")


@dataclass(frozen=True)
class Endpoint:
    """One weighted request template: method, path template with an optional {id}, body, headers."""

    path: str = "/"
    method: str = "GET"
    weight: float = 1.0
    body: Any = None
    headers: tuple[tuple[str, str], ...] | Mapping[str, str] = ()

    def __post_init__(self) -> None:
        method = str(self.method).upper()
        if method not in METHODS:
            raise InputError("method", f"must be one of {allowed(METHODS)}, got {self.method!r}")
        object.__setattr__(self, "method", method)
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise InputError("path", f"must be a string starting with '/', got {self.path!r}")
        for name in _PLACEHOLDER.findall(self.path):
            if name != "id":
                raise InputError("path", f"only the {{id}} placeholder is allowed, got {{{name}}}")
        object.__setattr__(self, "weight", positive_float("weight", self.weight))
        headers = self.headers
        if isinstance(headers, Mapping):
            headers = tuple((str(k), str(v)) for k, v in headers.items())
        elif not all(isinstance(h, tuple) and len(h) == 2 for h in headers):
            raise InputError("headers", "must be a mapping of header name to value")
        object.__setattr__(self, "headers", tuple(headers))
        if self.body is not None:
            try:
                json.dumps(self.body)
            except (TypeError, ValueError):
                raise InputError("body", "must be JSON-serialisable") from None

    def render(self, base_url: str, id_: int) -> httpx.Request:
        """Build the httpx.Request of this endpoint for one id."""
        path = self.path.replace("{id}", str(id_))
        body = _substitute(self.body, id_) if self.body is not None else None
        headers = dict(self.headers)
        headers.setdefault("user-agent", USER_AGENT)
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        return httpx.Request(self.method, base_url.rstrip("/") + path, **kwargs)


def _substitute(value: Any, id_: int) -> Any:
    """Replace "{id}" in the strings of a JSON value ("{id}" alone becomes the integer id)."""
    if isinstance(value, str):
        return id_ if value == "{id}" else value.replace("{id}", str(id_))
    if isinstance(value, list):
        return [_substitute(v, id_) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, id_) for k, v in value.items()}
    return value


def encode_request(request: httpx.Request) -> bytes:
    """Encode an httpx.Request as raw HTTP/1.1 bytes (request line, headers, body)."""
    content = request.read()
    lines = [request.method.encode() + b" " + request.url.raw_path + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n" + content


@dataclass(frozen=True)
class Scenario:
    """Weighted endpoint mix plus an id distribution (uniform, zipf s, or the seed account's
    hot keys) over ids 1..id_max."""

    endpoints: tuple[Endpoint, ...] = field(default_factory=lambda: (Endpoint(),))
    ids: str = "uniform"
    id_max: int = DEFAULT_ID_MAX
    zipf_s: float = 1.1
    seed: int = 0
    pool_size: int = DEFAULT_POOL_SIZE

    def __post_init__(self) -> None:
        endpoints = tuple(self.endpoints)
        if not endpoints or not all(isinstance(e, Endpoint) for e in endpoints):
            raise InputError("endpoints", "must be a non-empty list of Endpoint")
        object.__setattr__(self, "endpoints", endpoints)
        if self.ids not in DISTRIBUTIONS:
            raise InputError("ids", f"must be one of {allowed(DISTRIBUTIONS)}, got {self.ids!r}")
        object.__setattr__(self, "id_max", positive_int("id_max", self.id_max))
        object.__setattr__(self, "zipf_s", positive_float("zipf_s", self.zipf_s))
        object.__setattr__(self, "pool_size", positive_int("pool_size", self.pool_size))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError("seed", f"must be an integer, got {self.seed!r}")

    @classmethod
    def default(cls, path: str = "/", *, id_max: int = DEFAULT_ID_MAX) -> Scenario:
        """The single-endpoint scenario: GET of the URL's path, {id} uniform over 1..id_max."""
        # The pool covers the id range (up to MAX_POOL_SIZE), so caches see every id, not 4,096.
        pool = (
            min(max(DEFAULT_POOL_SIZE, id_max), MAX_POOL_SIZE)
            if "{id}" in path
            else DEFAULT_POOL_SIZE
        )
        return cls(endpoints=(Endpoint(path=path or "/"),), id_max=id_max, pool_size=pool)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "scenario") -> Scenario:
        """Build a scenario from a JSON-like dict; unknown fields raise InputError."""
        if not isinstance(data, Mapping):
            raise InputError("scenario", f"{source} must hold a JSON object")
        _reject_unknown(data, _SCENARIO_FIELDS, f"{source}")
        raw_endpoints = data.get("endpoints")
        if not isinstance(raw_endpoints, Sequence) or isinstance(raw_endpoints, str | bytes):
            raise InputError("scenario", f"{source}: 'endpoints' must be a list of objects")
        endpoints = []
        for i, item in enumerate(raw_endpoints):
            if not isinstance(item, Mapping):
                raise InputError("scenario", f"{source}: endpoints[{i}] must be an object")
            _reject_unknown(item, _ENDPOINT_FIELDS, f"{source}: endpoints[{i}]")
            try:
                endpoints.append(Endpoint(**dict(item)))
            except InputError as exc:
                raise InputError("scenario", f"{source}: endpoints[{i}].{exc}") from None
        kwargs = {k: v for k, v in data.items() if k != "endpoints"}
        try:
            return cls(endpoints=tuple(endpoints), **kwargs)
        except InputError as exc:
            raise InputError("scenario", f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> Scenario:
        """Load a scenario from a JSON file."""
        file = Path(path)
        try:
            data = json.loads(file.read_text())
        except OSError as exc:
            raise InputError("scenario", f"cannot read {file}: {exc.strerror}") from None
        except ValueError as exc:
            raise InputError("scenario", f"{file} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source=str(file))

    def sample(self, count: int, *, seed: int = 0) -> list[tuple[Endpoint, int]]:
        """Draw count (endpoint, id) pairs from the weights and the id distribution."""
        rng = random.Random(self.seed * 1_000_003 + seed)
        weights = list(itertools.accumulate(e.weight for e in self.endpoints))
        chosen = rng.choices(self.endpoints, cum_weights=weights, k=count)
        if self.ids == "uniform":
            ids = [rng.randint(1, self.id_max) for _ in range(count)]
        elif self.ids == "seed":
            hot = self.hot_ids()
            ids = [
                rng.randint(1, hot)
                if rng.random() < SEED_HOT_SHARE
                else rng.randint(1, self.id_max)
                for _ in range(count)
            ]
        else:
            cum = list(itertools.accumulate(k**-self.zipf_s for k in range(1, self.id_max + 1)))
            ids = rng.choices(range(1, self.id_max + 1), cum_weights=cum, k=count)
        return list(zip(chosen, ids, strict=True))

    def hot_ids(self) -> int:
        """With ids "seed": the hot set is ids 1..hot_ids()."""
        return min(self.id_max, max(SEED_HOT_MIN, round(self.id_max * SEED_HOT_FRACTION)))

    def requests(
        self, base_url: str, *, count: int | None = None, seed: int = 0
    ) -> list[httpx.Request]:
        """Model a pool of requests as httpx.Request objects (count defaults to pool_size)."""
        pairs = self.sample(count or self.pool_size, seed=seed)
        return [endpoint.render(base_url, id_) for endpoint, id_ in pairs]

    def encode_pool(self, base_url: str, *, count: int | None = None, seed: int = 0) -> list[bytes]:
        """Encode a pool of sampled requests once into raw HTTP/1.1 bytes, to be cycled through."""
        pairs = self.sample(count or self.pool_size, seed=seed)
        # A body-less endpoint is modelled by httpx once; each id is then a byte substitution, so
        # a pool can cover a large id range (every id a cache would see) without a slow start.
        templates = {
            id(e): encode_request(e.render(base_url, _SENTINEL_ID))
            for e in self.endpoints
            if e.body is None and "{id}" in e.path
        }
        sentinel = str(_SENTINEL_ID).encode()
        return [
            templates[id(e)].replace(sentinel, str(i).encode())
            if id(e) in templates
            else encode_request(e.render(base_url, i))
            for e, i in pairs
        ]


def _reject_unknown(data: Mapping[str, Any], fields: Sequence[str], where: str) -> None:
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise InputError(
            "scenario",
            f"{where}: unknown field {unknown[0]!r}; allowed: {allowed(fields)}",
        )
