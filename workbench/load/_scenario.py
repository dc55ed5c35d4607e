"""Scenario: weighted endpoints and an id distribution, pre-encoded into raw HTTP/1.1 requests."""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

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
MAX_POOL_SIZE = 131_072
# A zipf pool holds its least likely id about this many times: rounding a share to whole copies
# then skews popularities by at most ~1/8 (below a point of a simulated LRU hit ratio).
POOL_COPIES = 8
PICK_SLOTS = 65_536  # a pool of several parts draws a part through this many slots (shares to 2e-5)
_SENTINEL_ID = 918_273_645_546_372_819  # stands for {id} in encoded templates
USER_AGENT = "workbench-load"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ENDPOINT_FIELDS = ("method", "path", "weight", "body", "headers")
_SCENARIO_FIELDS = ("endpoints", "ids", "id_max", "zipf_s", "seed", "pool_size")
T = TypeVar("T")


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

    @property
    def uses_id(self) -> bool:
        """Whether the id shows in the request (path or body): else every id is the same one."""
        return "{id}" in self.path or (self.body is not None and "{id}" in json.dumps(self.body))

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
    hot keys) over ids 1..id_max; pool_size: most requests a pool holds (None: MAX_POOL_SIZE)."""

    endpoints: tuple[Endpoint, ...] = field(default_factory=lambda: (Endpoint(),))
    ids: str = "uniform"
    id_max: int = DEFAULT_ID_MAX
    zipf_s: float = 1.1
    seed: int = 0
    pool_size: int | None = None

    def __post_init__(self) -> None:
        endpoints = tuple(self.endpoints)
        if not endpoints or not all(isinstance(e, Endpoint) for e in endpoints):
            raise InputError("endpoints", "must be a non-empty list of Endpoint")
        object.__setattr__(self, "endpoints", endpoints)
        if self.ids not in DISTRIBUTIONS:
            raise InputError("ids", f"must be one of {allowed(DISTRIBUTIONS)}, got {self.ids!r}")
        object.__setattr__(self, "id_max", positive_int("id_max", self.id_max))
        object.__setattr__(self, "zipf_s", positive_float("zipf_s", self.zipf_s))
        if self.pool_size is not None:
            object.__setattr__(self, "pool_size", positive_int("pool_size", self.pool_size))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError("seed", f"must be an integer, got {self.seed!r}")

    @classmethod
    def default(cls, path: str = "/", *, id_max: int = DEFAULT_ID_MAX) -> Scenario:
        """The single-endpoint scenario: GET of the URL's path, {id} uniform over 1..id_max."""
        return cls(endpoints=(Endpoint(path=path or "/"),), id_max=id_max)

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
        """Draw count (endpoint, id) pairs independently from the weights and the id distribution
        (what drawing per request would send; a pool is pool_parts)."""
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
            cum = self._zipf_cum()
            ids = rng.choices(range(1, self.id_max + 1), cum_weights=cum, k=count)
        return list(zip(chosen, ids, strict=True))

    def hot_ids(self) -> int:
        """With ids "seed": the hot set is ids 1..hot_ids()."""
        return min(self.id_max, max(SEED_HOT_MIN, round(self.id_max * SEED_HOT_FRACTION)))

    def pool_parts(
        self, count: int | None = None, *, seed: int = 0
    ) -> list[tuple[float, list[tuple[Endpoint, int]]]]:
        """A pool's (endpoint, id) pairs in parts, each with its share of the requests; a request
        is one pair of a part, drawn uniformly (count: one part of count independent draws).

        An endpoint's uniform ids are a part holding each id once (the seed account's: a hot part
        and a uniform one), so draws from the pool are draws from the distribution; zipf ids are a
        stratified sample. Past pool_size (default MAX_POOL_SIZE) pairs in all, the largest parts
        share what is left, each a stratified subset of its ids.
        """
        if count:
            return [(1.0, self.sample(count, seed=seed))]
        rng = random.Random(self.seed * 1_000_003 + seed)
        total = sum(e.weight for e in self.endpoints)
        # (share, endpoint, ids: 1..top uniform, or None for the zipf law over 1..id_max)
        specs: list[tuple[float, Endpoint, int | None]] = []
        for e in self.endpoints:
            share = e.weight / total
            if not e.uses_id:
                specs.append((share, e, 1))
            elif self.ids == "uniform":
                specs.append((share, e, self.id_max))
            elif self.ids == "seed":
                specs.append((share * SEED_HOT_SHARE, e, self.hot_ids()))
                specs.append((share * (1 - SEED_HOT_SHARE), e, self.id_max))
            else:
                specs.append((share, e, None))
        budget = self.pool_size or MAX_POOL_SIZE
        sizes = _fill([self._zipf_need() if top is None else top for _, _, top in specs], budget)
        parts = []
        for (share, endpoint, top), n in zip(specs, sizes, strict=True):
            u = rng.random()  # systematic sampling: the quantiles (u + j) / n
            quantiles = [(u + j) / n for j in range(n)]
            ids = self._zipf_ids(quantiles) if top is None else _uniform_ids(quantiles, top)
            parts.append((share, [(endpoint, i) for i in ids]))
        return parts

    def _zipf_need(self) -> int:
        """Pairs for a zipf part to hold its rarest id POOL_COPIES times (capped)."""
        if POOL_COPIES * self.id_max**self.zipf_s >= MAX_POOL_SIZE:
            return MAX_POOL_SIZE  # 1 / rarest >= id_max**s: past the cap without the series' sum
        return math.ceil(POOL_COPIES * self._zipf_cum()[-1] * self.id_max**self.zipf_s)

    def _zipf_ids(self, quantiles: list[float]) -> list[int]:
        cum = self._zipf_cum()
        top = cum[-1]
        return [min(self.id_max, 1 + bisect.bisect_right(cum, q * top)) for q in quantiles]

    def _zipf_cum(self) -> list[float]:
        return list(itertools.accumulate(k**-self.zipf_s for k in range(1, self.id_max + 1)))

    def requests(
        self, base_url: str, *, count: int | None = None, seed: int = 0
    ) -> Pool[httpx.Request]:
        """Model a pool of requests as httpx.Request objects (count: of count draws)."""
        return Pool.of(
            [
                (share, [endpoint.render(base_url, id_) for endpoint, id_ in pairs])
                for share, pairs in self.pool_parts(count, seed=seed)
            ]
        )

    def encode_pool(self, base_url: str, *, count: int | None = None, seed: int = 0) -> Pool[bytes]:
        """Encode a pool of requests once into raw HTTP/1.1 bytes (count: of count draws)."""
        # A body-less endpoint is modelled by httpx once; each id is then a byte substitution, so
        # a pool can cover a large id range (every id a cache would see) without a slow start.
        templates = {
            id(e): encode_request(e.render(base_url, _SENTINEL_ID))
            for e in self.endpoints
            if e.body is None and "{id}" in e.path
        }
        sentinel = str(_SENTINEL_ID).encode()
        return Pool.of(
            [
                (
                    share,
                    [
                        templates[id(e)].replace(sentinel, str(i).encode())
                        if id(e) in templates
                        else encode_request(e.render(base_url, i))
                        for e, i in pairs
                    ],
                )
                for share, pairs in self.pool_parts(count, seed=seed)
            ]
        )


def _uniform_ids(quantiles: list[float], top: int) -> list[int]:
    """The ids 1..top at these quantiles of the uniform law (each id once when there are top)."""
    return [min(top, 1 + int(q * top)) for q in quantiles]


def _fill(needs: list[int], budget: int) -> list[int]:
    """Sizes for parts needing these many pairs within budget: the small whole, the large sharing
    what is left equally (at least one pair each)."""
    sizes = [0] * len(needs)
    left = budget
    order = sorted(range(len(needs)), key=needs.__getitem__)
    for k, part in enumerate(order):
        sizes[part] = max(1, min(needs[part], left // (len(order) - k)))
        left -= sizes[part]
    return sizes


@dataclass(frozen=True)
class Pool(Generic[T]):
    """A scenario's requests built once: parts, each drawn by its share, then uniformly within.

    The engine draws per request (picker), never cycles: caches learn a cycle's period (an id
    recurs exactly one pool later), so two gunicorn workers' L1s read 58-75% hits where draws
    per request give 50% (ids uniform over 20,000, an L1 of 10,000 per worker).
    """

    items: tuple[T, ...]
    ends: tuple[int, ...]  # part k is items[ends[k - 1]:ends[k]]
    shares: tuple[float, ...]  # part k's share of the requests; they sum to 1

    @classmethod
    def of(cls, parts: Sequence[tuple[float, Sequence[T]]]) -> Pool[T]:
        """The pool of these (share, requests) parts (empty parts dropped, shares normalised)."""
        kept = [(share, list(items)) for share, items in parts if items and share > 0]
        total = sum(share for share, _ in kept)
        return cls(
            items=tuple(itertools.chain.from_iterable(items for _, items in kept)),
            ends=tuple(itertools.accumulate(len(items) for _, items in kept)),
            shares=tuple(share / total for share, _ in kept),
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def parts(self) -> list[tuple[float, tuple[T, ...]]]:
        """The (share, requests) parts."""
        starts = (0, *self.ends[:-1])
        return [
            (share, self.items[a:b])
            for share, a, b in zip(self.shares, starts, self.ends, strict=True)
        ]

    def picker(self, *, seed: str) -> Callable[[], T]:
        """A function giving the next request: a part by its share, one of its requests uniformly
        (one random number each: its integer part picks a slot, its fraction the request)."""
        draw = random.Random(seed).random
        items = self.items
        if len(self.ends) == 1:
            n = len(items)
            return lambda: items[int(draw() * n)]
        # PICK_SLOTS slots shared by the parts in proportion (each part at least one): a lookup,
        # not a search, so several parts cost a request about what one does
        starts = (0, *self.ends[:-1])
        counts = _apportion([share * PICK_SLOTS for share in self.shares], PICK_SLOTS)
        slots = list(
            itertools.chain.from_iterable(
                itertools.repeat((a, b - a), c)
                for a, b, c in zip(starts, self.ends, counts, strict=True)
            )
        )
        g = len(slots)

        def pick() -> T:
            u = draw() * g
            j = int(u)
            first, size = slots[j]
            return items[first + int((u - j) * size)]

        return pick


def _apportion(exact: list[float], total: int) -> list[int]:
    """Whole numbers near exact (largest remainders, at least one each) summing to about total."""
    counts = [max(1, math.floor(x)) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda k: counts[k] - exact[k])
    for k in by_remainder[: max(0, total - sum(counts))]:
        counts[k] += 1
    return counts


def _reject_unknown(data: Mapping[str, Any], fields: Sequence[str], where: str) -> None:
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise InputError(
            "scenario",
            f"{where}: unknown field {unknown[0]!r}; allowed: {allowed(fields)}",
        )
