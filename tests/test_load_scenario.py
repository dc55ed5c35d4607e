"""Scenario: sampling, pre-encoding into raw HTTP/1.1, loading from JSON files."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from service.cache import L1Cache
from workbench._errors import InputError
from workbench.load import Endpoint, Scenario
from workbench.load._scenario import MAX_POOL_SIZE, SEED_HOT_SHARE


def test_default_scenario_encodes_a_get_of_the_path() -> None:
    pool = Scenario.default("/items?x=1").encode_pool("http://127.0.0.1:8000", count=3)
    assert len(pool) == 3
    head = pool[0].split(b"\r\n")
    assert head[0] == b"GET /items?x=1 HTTP/1.1"
    assert b"Host: 127.0.0.1:8000" in head
    assert pool[0].endswith(b"\r\n\r\n")


def test_post_with_json_body_and_id_placeholders() -> None:
    scenario = Scenario(
        endpoints=(
            Endpoint(
                "/users/{id}",
                method="put",
                body={"id": "{id}", "name": "u{id}"},
                headers={"X-Test": "1"},
            ),
        ),
        id_max=5,
    )
    raw = scenario.encode_pool("http://localhost:9", count=20)
    for data in raw:
        head, body = data.split(b"\r\n\r\n", 1)
        line = head.split(b"\r\n")[0].decode()
        id_ = int(line.split()[1].rsplit("/", 1)[1])
        assert line == f"PUT /users/{id_} HTTP/1.1"
        assert json.loads(body) == {"id": id_, "name": f"u{id_}"}
        assert f"Content-Length: {len(body)}".encode() in head
        assert b"X-Test: 1" in head
    requests = scenario.requests("http://localhost:9", count=2)
    assert requests[0].method == "PUT"


def test_weights_and_zipf_ids() -> None:
    scenario = Scenario(
        endpoints=(Endpoint("/a", weight=3), Endpoint("/b", weight=1)),
        ids="zipf",
        zipf_s=1.2,
        id_max=1000,
    )
    pairs = scenario.sample(20_000, seed=1)
    paths = Counter(e.path for e, _ in pairs)
    assert paths["/a"] / len(pairs) == pytest.approx(0.75, abs=0.02)
    ids = Counter(i for _, i in pairs)
    assert ids.most_common(1)[0][0] == 1
    assert ids[1] > 4 * ids[5] > 0
    uniform = Counter(i for _, i in Scenario(id_max=10).sample(20_000))
    assert min(uniform.values()) > 1_500
    assert scenario.sample(10, seed=3) == scenario.sample(10, seed=3)


def test_from_file_and_unknown_fields(tmp_path: Path) -> None:
    good = tmp_path / "ok.json"
    good.write_text(
        json.dumps(
            {
                "endpoints": [
                    {"path": "/users/{id}", "weight": 2},
                    {"method": "POST", "path": "/u"},
                ],
                "ids": "zipf",
                "zipf_s": 1.1,
                "id_max": 100,
            }
        )
    )
    scenario = Scenario.from_file(good)
    assert [e.method for e in scenario.endpoints] == ["GET", "POST"]
    assert scenario.ids == "zipf"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"endpoints": [{"path": "/"}], "color": "red"}))
    with pytest.raises(InputError) as info:
        Scenario.from_file(bad)
    assert "'color'" in str(info.value) and "endpoints" in str(info.value)

    bad.write_text(json.dumps({"endpoints": [{"path": "/", "verb": "GET"}]}))
    with pytest.raises(InputError, match="'verb'.*allowed.*'method'"):
        Scenario.from_file(bad)

    with pytest.raises(InputError, match="scenario"):
        Scenario.from_file(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"path": "users"}, "path"),
        ({"path": "/{name}"}, "path"),
        ({"method": "BREW"}, "method"),
        ({"weight": 0}, "weight"),
    ],
)
def test_endpoint_validation(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(InputError) as info:
        Endpoint(**kwargs)  # type: ignore[arg-type]
    assert info.value.name == name


def test_scenario_validation() -> None:
    with pytest.raises(InputError, match="ids"):
        Scenario(ids="pareto")
    with pytest.raises(InputError, match="id_max"):
        Scenario(id_max=0)


def test_default_pool_covers_a_large_id_range_as_httpx_would_encode_it() -> None:
    from workbench.load._scenario import encode_request

    scenario = Scenario.default("/users/{id}", id_max=50_000)
    pool = scenario.encode_pool("http://127.0.0.1:8000")
    assert len(set(pool)) > 25_000  # not a few thousand ids: a cache sees the range
    mixed = Scenario(
        endpoints=(
            Endpoint(path="/users/{id}"),
            Endpoint(path="/u/{id}", method="PUT", body={"n": "{id}"}),
        ),
        id_max=100,
    )
    expected = [encode_request(r) for r in mixed.requests("http://127.0.0.1:8000", count=40)]
    assert list(mixed.encode_pool("http://127.0.0.1:8000", count=40)) == expected


def test_seed_ids_send_the_accounts_share_to_a_hot_set() -> None:
    scenario = Scenario(ids="seed", id_max=100_000)
    assert scenario.hot_ids() == 100  # 0.1% of the ids
    ids = [i for _, i in scenario.sample(20_000, seed=2)]
    hot = sum(1 for i in ids if i <= scenario.hot_ids()) / len(ids)
    assert hot == pytest.approx(0.85, abs=0.015)
    assert max(ids) > 50_000  # the cold rest spans every id
    assert Scenario(ids="seed", id_max=2_000).hot_ids() == 10  # at least 10
    with pytest.raises(InputError, match="'uniform', 'zipf', 'seed'"):
        Scenario(ids="hot")


def _path_ids(pool: Iterable[bytes]) -> list[int]:
    return [int(data.split(b" ", 2)[1].rsplit(b"/", 1)[1]) for data in pool]


def test_pool_holds_every_id_of_the_range() -> None:
    pool = Scenario.default("/users/{id}", id_max=20_000).encode_pool("http://127.0.0.1:8000")
    # each id once: 20,000 draws with replacement held 63% of them (1 - 1/e)
    assert sorted(_path_ids(pool)) == list(range(1, 20_001))
    seed = dataclasses.replace(Scenario.default("/users/{id}", id_max=20_000), ids="seed")
    parts = seed.encode_pool("http://127.0.0.1:8000").parts()
    assert [share for share, _ in parts] == pytest.approx([SEED_HOT_SHARE, 1 - SEED_HOT_SHARE])
    assert [sorted(_path_ids(part)) for _, part in parts] == [
        list(range(1, seed.hot_ids() + 1)),
        list(range(1, 20_001)),
    ]


def test_pool_stays_within_its_size() -> None:
    big = Scenario(endpoints=(Endpoint("/u/{id}"),), ids="seed", id_max=1_000_000)
    parts = big.pool_parts()
    assert [len(pairs) for _, pairs in parts] == [1_000, MAX_POOL_SIZE - 1_000]  # hot set whole
    cold = {i for _, i in parts[1][1]}
    assert len(cold) == MAX_POOL_SIZE - 1_000 and max(cold) > 990_000  # spread over the range
    mixed = Scenario(
        endpoints=(Endpoint("/a/{id}", weight=3), Endpoint("/b/{id}"), Endpoint("/health")),
        ids="zipf",
        id_max=50_000,
        pool_size=10_000,
    )
    parts = mixed.pool_parts()
    assert [len(pairs) for _, pairs in parts] == [4_999, 5_000, 1]
    assert sum(share for share, _ in parts) == pytest.approx(1.0)


def _l1_hit_ratio(keys: Iterable[str], *, workers: int, size: int, warm: int) -> float:
    """The service's L1 hit ratio for these keys, each request to a random worker."""
    route = random.Random(5)
    caches = [L1Cache(max_size=size, clock=lambda: 0.0) for _ in range(workers)]
    hits = looked = 0
    for n, key in enumerate(keys):
        cache = caches[route.randrange(workers)]
        hit = cache.get(key) is not None
        if not hit:
            cache.set(key, b"", ttl=1.0)
        if n >= warm:
            hits += hit
            looked += 1
    return hits / looked


@pytest.mark.parametrize(
    ("scenario", "size"),
    [
        (Scenario(endpoints=(Endpoint("/users/{id}"),), id_max=5_000), 2_500),
        (Scenario(endpoints=(Endpoint("/users/{id}"),), ids="seed", id_max=10_000), 500),
        (Scenario(endpoints=(Endpoint("/users/{id}"),), ids="zipf", id_max=2_000), 1_000),
        (
            Scenario(
                endpoints=(
                    Endpoint("/users/{id}", weight=0.7),
                    Endpoint("/items/{id}", weight=0.3),
                ),
                id_max=1_500,
            ),
            1_000,
        ),
    ],
    ids=["uniform", "seed", "zipf", "two-endpoints"],
)
def test_engine_requests_read_the_l1_hit_ratio_of_per_request_draws(
    scenario: Scenario, size: int
) -> None:
    # Two workers, each an L1 of `size` (half the ids; a twentieth with seed, whose cold rest
    # then matters). Cycled, a pool of id_max draws read 76% (uniform) and a pool of 4,096 100%
    # (zipf) for 50% and 92% with draws per request: the caches learned the cycle's period.
    warm, count = 20_000, 40_000
    pool = scenario.encode_pool("http://127.0.0.1:8000", seed=1)
    pick = pool.picker(seed="test")
    sent = (pick().split(b" ", 2)[1].decode() for _ in range(warm + count))
    drawn = (e.path.replace("{id}", str(i)) for e, i in scenario.sample(warm + count, seed=2))
    engine = _l1_hit_ratio(sent, workers=2, size=size, warm=warm)
    per_request = _l1_hit_ratio(drawn, workers=2, size=size, warm=warm)
    assert engine == pytest.approx(per_request, abs=0.015)
