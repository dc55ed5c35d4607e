"""compare: bootstrap confidence intervals that find real differences and only those."""

from __future__ import annotations

import numpy as np

from workbench.compare import compare, verdict

from .test_store import make_run


def test_a_real_difference_is_significant() -> None:
    rng = np.random.default_rng(1)
    fast = make_run("fast", list(rng.integers(1_000, 2_000, 5_000)))
    slow = make_run("slow", list(rng.integers(3_000, 4_000, 5_000)))
    table = compare(fast, slow, n_boot=300).set_index("metric")
    assert table.loc["p50_ms", "significant"]
    assert 3.0 < table.loc["p50_ms", "b"] < 4.0 and 1.0 < table.loc["p50_ms", "a"] < 2.0
    assert table.loc["p50_ms", "ci_low"] > 1.0


def test_same_distribution_is_no_significant_difference() -> None:
    rng = np.random.default_rng(2)
    a = make_run("a", list(rng.integers(1_000, 2_000, 5_000)))
    b = make_run("b", list(rng.integers(1_000, 2_000, 5_000)))
    table = compare(a, b, n_boot=300)
    assert not table.set_index("metric").loc["p50_ms", "significant"]
    assert "p50_ms: no significant difference" in verdict(table)
