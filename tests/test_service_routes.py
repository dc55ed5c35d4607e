"""The endpoints' own id check answers exactly as FastAPI's Path(ge, le) validation did."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from service.routes import MAX_USER_ID, UserId, _json, router, user_id_of

IDS = [
    "1", "42", "999999999999999999", str(MAX_USER_ID), str(MAX_USER_ID + 1), str(2**63), "9" * 40,
    "0", "00", "007", "-1", "+1", " 1", "1 ", "1.0", "1.5", "1e3", "1_000", "abc", "0x10",
    "\uff11", "\u0663", "\u00b2", "%20", "",
]  # fmt: skip


def _answers(app: FastAPI, ids: list[str]) -> list[tuple[int, str]]:
    async def fetch() -> list[tuple[int, str]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = [await client.get(f"/users/{user_id}") for user_id in ids]
        return [(answer.status_code, answer.text) for answer in answers]

    return asyncio.run(fetch())


def test_user_id_of_answers_every_id_as_fastapis_validation_does() -> None:
    declared = FastAPI()
    own = FastAPI()

    @declared.get("/users/{user_id}")
    async def by_fastapi(user_id: UserId) -> dict[str, int]:
        return {"id": user_id}

    @own.get("/users/{user_id}")
    async def by_check(request: Request) -> dict[str, int]:
        return {"id": user_id_of(request)}

    expected = _answers(declared, IDS)
    assert _answers(own, IDS) == expected
    # the list holds both kinds: the check must have taken its fast and its slow path
    assert {status for status, _ in expected} >= {200, 422}


def test_the_get_endpoints_still_document_their_id() -> None:
    app = FastAPI()
    app.include_router(router)
    paths = app.openapi()["paths"]
    for path in ("/users/{user_id}", "/users/{user_id}/full", "/users/{user_id}/fast"):
        operation = paths[path]["get"]
        (parameter,) = operation["parameters"]
        assert parameter["name"] == "user_id" and parameter["in"] == "path"
        assert parameter["schema"]["minimum"] == 1
        assert parameter["schema"]["maximum"] == MAX_USER_ID
        assert "422" in operation["responses"]


@pytest.mark.parametrize("text", ["1", "123456789012345678"])
def test_plain_ids_are_read_as_integers(text: str) -> None:
    scope = {"type": "http", "path_params": {"user_id": text}}
    assert user_id_of(Request(scope)) == int(text)


@pytest.mark.parametrize(("body", "status"), [(b'{"id":1}', 200), (b"", 200), (b"{}", 503)])
def test_a_json_body_answers_as_starlettes_response_would(body: bytes, status: int) -> None:
    ours, theirs = _json(body, status), Response(body, status, media_type="application/json")
    assert (ours.status_code, ours.body, ours.raw_headers, ours.background) == (
        theirs.status_code, theirs.body, theirs.raw_headers, theirs.background,
    )  # fmt: skip
    assert ours.headers["content-type"] == "application/json"
