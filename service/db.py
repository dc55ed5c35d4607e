"""Database engines: a write engine and a read engine, each with its own pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from service.schema import users
from service.settings import ServiceSettings


def async_url(url: str) -> str:
    """A postgresql:// URL with SQLAlchemy's asyncpg driver named."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


@dataclass
class Database:
    """The service's engines and session factories."""

    write: AsyncEngine
    read: AsyncEngine
    sessions: async_sessionmaker[Any]
    read_sessions: async_sessionmaker[Any]

    @classmethod
    def create(
        cls, settings: ServiceSettings, *, url: str, read_url: str | None = None
    ) -> Database:
        """Engines configured from settings; the read engine is separate only with read_split."""
        write = _engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            settings=settings,
        )
        if settings.read_split:
            read = _engine(
                read_url or url,
                pool_size=settings.read_pool_size,
                max_overflow=settings.read_max_overflow,
                settings=settings,
            )
        else:
            read = write
        return cls(
            write=write,
            read=read,
            sessions=async_sessionmaker(write, expire_on_commit=settings.expire_on_commit),
            read_sessions=async_sessionmaker(read, expire_on_commit=settings.expire_on_commit),
        )

    def engines(self) -> dict[str, AsyncEngine]:
        """Engines by role; one entry when reads and writes share an engine."""
        return (
            {"write": self.write}
            if self.read is self.write
            else {
                "write": self.write,
                "read": self.read,
            }
        )

    async def get_user(self, user_id: int) -> dict[str, Any] | None:
        """One user row by id from the read engine, or None."""
        async with self.read.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        return dict(row._mapping) if row is not None else None

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.read.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        """Close every pooled connection."""
        for engine in self.engines().values():
            await engine.dispose()


def _engine(
    url: str, *, pool_size: int, max_overflow: int, settings: ServiceSettings
) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_pre_ping=settings.pool_pre_ping,
        pool_recycle=settings.pool_recycle,
    )
