"""HDR histogram helpers: merging encoded histograms equals the histogram of all samples."""

from __future__ import annotations

import random

from workbench import hdr as hist


def test_merge_of_encoded_parts_equals_histogram_of_all_samples() -> None:
    rng = random.Random(7)
    samples = [int(rng.lognormvariate(7, 1.5)) + 1 for _ in range(30_000)]
    parts = [samples[0::3], samples[1::3], samples[2::3]]
    blobs = []
    for part in parts:
        counts: dict[int, int] = {}
        for v in part:
            counts[v] = counts.get(v, 0) + 1
        h = hist.new_histogram()
        hist.record_counts(h, counts)
        blobs.append(hist.encode(h))
    merged = hist.merge(blobs)
    whole = hist.new_histogram()
    for v in samples:
        whole.record_value(v)
    assert merged.get_total_count() == len(samples)
    for p in (1, 25, 50, 90, 99, 99.9, 100):
        assert merged.get_value_at_percentile(p) == whole.get_value_at_percentile(p)
    assert merged.get_max_value() == whole.get_max_value()


def test_known_values() -> None:
    a, b = hist.new_histogram(), hist.new_histogram()
    hist.record_counts(a, {1000: 90})  # 1 ms
    hist.record_counts(b, {50_000: 10, 10**9: 1})  # 50 ms, and one beyond the range (clamped)
    merged = hist.merge([hist.encode(a), hist.encode(b), b""])
    assert merged.get_total_count() == 101
    assert hist.percentile_ms(merged, 50) == 1.0
    assert 49.9 < hist.percentile_ms(merged, 95) < 50.1
    assert 59_900 < hist.max_ms(merged) <= 60_100
    assert hist.decode(b"").get_total_count() == 0
    assert hist.percentile_ms(hist.new_histogram(), 99) != hist.percentile_ms(
        hist.new_histogram(), 99
    )


def test_percentiles_in_one_pass_equal_hdrh_one_by_one() -> None:
    rng = random.Random(11)
    percentiles = [0.0, 0.001, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 99.999, 100, 150]
    for shape in ((7, 1.5, 30_000), (3, 0.2, 7), (12, 2.5, 5_000)):
        mu, sigma, n = shape
        h = hist.new_histogram()
        hist.record_counts(h, {int(rng.lognormvariate(mu, sigma)) + 1: 1 for _ in range(n)})
        for histogram in (h, hist.decode(hist.encode(h))):  # a decoded payload may be shorter
            expected = [histogram.get_value_at_percentile(p) / 1000.0 for p in percentiles]
            assert hist.percentiles_ms(histogram, percentiles) == expected
            assert [hist.percentile_ms(histogram, p) for p in percentiles] == expected
    # the summary and the spectrum read the same values
    blob = hist.encode(h)
    decoded = hist.decode(blob)
    summary = hist.percentiles(blob)
    assert summary["p99"] == decoded.get_value_at_percentile(99) / 1000.0
    spectrum = hist.spectrum(blob)
    assert len(spectrum) > 10
    for percentile, value in zip(
        spectrum["percentile"][:-1], spectrum["latency_ms"][:-1], strict=True
    ):
        assert value == decoded.get_value_at_percentile(percentile) / 1000.0
