"""A sweep's point: its stable key, and the failure of a point whose notebook raised."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def point_key(point: Mapping[str, Any]) -> str:
    """A stable text key of one grid point."""
    return json.dumps(dict(sorted(point.items())), sort_keys=True, default=str)


@dataclass(frozen=True)
class PointFailure:
    """A sweep point whose notebook raised: the point, the notebook's error, its executed copy."""

    point: dict[str, Any]
    ename: str
    evalue: str
    executed: Path
