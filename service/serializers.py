"""Response serializers: the Pydantic model path and the orjson fast path, equal in content."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict


class UserOut(BaseModel):
    """A user as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    email: str
    created_at: datetime


def user_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public fields of a user row as a plain dict (for the orjson path)."""
    return {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "created_at": row["created_at"],
    }


def dumps_orjson(value: Any) -> bytes:
    """JSON bytes by orjson; datetimes as ISO 8601 like Pydantic writes them."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def dumps_pydantic(row: Mapping[str, Any]) -> bytes:
    """JSON bytes of a user through the Pydantic model (validation + serialization)."""
    return UserOut.model_validate(dict(row)).model_dump_json().encode()
