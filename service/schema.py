"""The tables the service reads and the workbench seeds, in a PostgreSQL schema of their own."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA = "workbench"
"""The PostgreSQL schema every table below lives in; nothing outside it is read or written."""

metadata = MetaData(schema=SCHEMA)

users = Table(
    "users",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("email", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

profiles = Table(
    "profiles",
    metadata,
    Column("user_id", BigInteger, ForeignKey("users.id"), primary_key=True),
    Column("bio", Text, nullable=False),
    Column("country", String(2), nullable=False),
    Column("score", Integer, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("user_id", BigInteger, ForeignKey("users.id"), primary_key=True),
    Column("theme", String(20), nullable=False),
    Column("language", String(10), nullable=False),
    Column("notifications", Boolean, nullable=False),
)

meta = Table(
    "workbench_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
"""The workbench's marker: who created the schema and which seed its tables hold."""

USER_COLUMNS = ("id", "name", "email", "created_at")
