"""Resources: what one service process holds for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from service.batcher import Batcher
from service.cache import L1Cache, MultiLevelCache
from service.db import Database
from service.settings import ServiceSettings
from service.upstream import Upstream


@dataclass
class Resources:
    """Settings, engines, Redis, and the parts that settings switch on (None when off)."""

    settings: ServiceSettings
    db: Database
    redis: aioredis.Redis
    cache: MultiLevelCache | None = None
    model_cache: L1Cache | None = None
    batcher: Batcher[int, dict[str, Any]] | None = None
    detail_batcher: Batcher[int, dict[str, Any]] | None = None  # joined rows for /full
    upstream: Upstream | None = None
