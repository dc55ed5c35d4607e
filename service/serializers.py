"""Response serializers: the Pydantic model path and the orjson fast path, equal in content."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


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


class UserUpdate(BaseModel):
    """A partial update of a user: name and/or email, nothing else."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=100)
    email: str | None = Field(default=None, max_length=200, pattern=EMAIL_PATTERN)

    @model_validator(mode="after")
    def _not_empty(self) -> UserUpdate:
        if self.name is None and self.email is None:
            raise ValueError("give name and/or email")
        return self

    def values(self) -> dict[str, str]:
        """The fields to write."""
        return self.model_dump(exclude_none=True)
