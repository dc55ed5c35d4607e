"""SLO: latency percentile and error-rate thresholds a load result must meet."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from workbench._errors import InputError, allowed
from workbench.hdr import SUMMARY as PERCENTILES
from workbench.load._result import LoadResult

_LATENCY_KEYS = (*PERCENTILES, "max")
_UNITS_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zµ%]*)\s*$")


@dataclass(frozen=True)
class SLO:
    """Thresholds on corrected latency percentiles (ms) and on the error rate (fraction)."""

    latency_ms: tuple[tuple[str, float], ...] = ()
    error_rate: float | None = None

    @classmethod
    def parse(cls, text: str) -> SLO:
        """Parse "p95=50ms,p99=120ms,errors=0.1%" (units us, ms, s; errors as % or fraction)."""
        if not isinstance(text, str) or not text.strip():
            raise InputError("slo", "must look like 'p95=50ms,p99=120ms,errors=0.1%'")
        latency: dict[str, float] = {}
        error_rate = None
        for item in text.split(","):
            key, sep, raw = item.partition("=")
            key = key.strip().lower()
            if not sep:
                raise InputError("slo", f"{item.strip()!r} is not key=value")
            match = _NUMBER.match(raw.lower())
            if not match:
                raise InputError("slo", f"{key}: cannot read a number from {raw.strip()!r}")
            number, unit = float(match.group(1)), match.group(2)
            if key == "errors":
                if unit not in ("", "%"):
                    raise InputError("slo", f"errors: unit must be % or none, got {unit!r}")
                error_rate = number / 100.0 if unit == "%" else number
                if error_rate > 1:
                    raise InputError("slo", f"errors: must be at most 100%, got {raw.strip()!r}")
            elif key in _LATENCY_KEYS:
                if unit not in _UNITS_MS:
                    raise InputError(
                        "slo", f"{key}: unit must be one of {allowed(_UNITS_MS)}, got {unit!r}"
                    )
                if number <= 0:
                    raise InputError("slo", f"{key}: must be > 0")
                latency[key] = number * _UNITS_MS[unit]
            else:
                raise InputError(
                    "slo", f"unknown key {key!r}; allowed: {allowed((*_LATENCY_KEYS, 'errors'))}"
                )
        return cls(latency_ms=tuple(latency.items()), error_rate=error_rate)

    def check(self, result: LoadResult) -> list[str]:
        """The thresholds the result breaks, as readable strings (empty when all hold)."""
        return self.check_values(
            result.percentiles_ms("latency"), requests=result.requests, errors=result.errors
        )

    def check_values(
        self, measured: Mapping[str, float], *, requests: int, errors: int
    ) -> list[str]:
        """The thresholds broken by measured percentiles (ms, keys p50..p999, max) and counts."""
        broken = []
        for key, limit in self.latency_ms:
            if measured[key] > limit:
                broken.append(f"{key} = {measured[key]:.2f} ms > {limit:g} ms")
        if self.error_rate is not None:
            if requests == 0:
                broken.append("errors: no request was made")
            elif errors / requests > self.error_rate:
                rate = errors / requests
                broken.append(f"errors = {100 * rate:.3f}% > {100 * self.error_rate:g}%")
        return broken
