"""Response serializers: the Pydantic model path and the orjson fast path, equal in content."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class UserOut(BaseModel):
    """A user as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    email: str
    created_at: datetime


class ProfileOut(BaseModel):
    """A user's profile as the API returns it."""

    bio: str
    country: str
    score: int


class PreferencesOut(BaseModel):
    """A user's settings as the API returns them."""

    theme: str
    language: str
    notifications: bool


class UserFullOut(UserOut):
    """A user with their profile and settings nested (the account's richer responses)."""

    profile: ProfileOut
    settings: PreferencesOut


PROFILE_FIELDS = ("bio", "country", "score")
PREFERENCE_FIELDS = ("theme", "language", "notifications")


def user_full_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A joined user/profile/settings row as the nested dict the API returns."""
    return {
        **user_dict(row),
        "profile": {k: row[k] for k in PROFILE_FIELDS},
        "settings": {k: row[k] for k in PREFERENCE_FIELDS},
    }


def dumps_pydantic_full(row: Mapping[str, Any]) -> bytes:
    """JSON bytes of a joined row through the nested Pydantic model."""
    return UserFullOut.model_validate(user_full_dict(row)).model_dump_json().encode()


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

    @field_validator("name", "email")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        # PostgreSQL text holds neither NUL nor anything that is not UTF-8 (a lone surrogate):
        # refused here as bad input rather than failing in the database with a 500.
        if value is None:
            return value
        if "\x00" in value:
            raise ValueError("must not contain NUL characters (\\u0000)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (no lone surrogates)") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> UserUpdate:
        if self.name is None and self.email is None:
            raise ValueError("give name and/or email")
        return self

    def values(self) -> dict[str, str]:
        """The fields to write."""
        return self.model_dump(exclude_none=True)
