"""
Reading ``twistd wskeepalive --metrics``: one scrape as plain samples, and the
histogram arithmetic the benchmarks report (the difference of two scrapes,
its percentiles as bucket bounds).
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

PREFIX = "twisted_keepalive_"


@dataclass(frozen=True)
class Scrape:
    """Every sample of one scrape: (name, sorted labels) -> value."""

    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` that have these labels."""
        return sum(
            value
            for (sample, sample_labels), value in self.samples.items()
            if sample == PREFIX + name and _matches(sample_labels, labels)
        )

    def label_values(self, name: str, label: str) -> list[str]:
        """The values ``label`` takes on the samples called ``name``, sorted."""
        found = {
            dict(sample_labels)[label]
            for (sample, sample_labels) in self.samples
            if sample == PREFIX + name and label in dict(sample_labels)
        }
        return sorted(found, key=lambda v: (len(v), v))

    def histogram(self, name: str, **labels: str) -> dict[float, float]:
        """Cumulative bucket counts of histogram ``name``, by upper bound (inf last)."""
        buckets: dict[float, float] = {}
        for (sample, sample_labels), value in self.samples.items():
            if sample != PREFIX + name + "_bucket" or not _matches(sample_labels, labels):
                continue
            bound = float(dict(sample_labels)["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
        return dict(sorted(buckets.items()))


def _matches(sample_labels: tuple[tuple[str, str], ...], wanted: Mapping[str, str]) -> bool:
    have = dict(sample_labels)
    return all(have.get(k) == v for k, v in wanted.items())


def scrape(url: str, timeout: float = 10.0) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scrape(samples)


def difference(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    """Bucket counts of what happened between two scrapes of a histogram."""
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def quantile_bound(buckets: Mapping[float, float], q: float) -> float | None:
    """
    The upper bound of the bucket holding quantile ``q`` of a cumulative
    histogram (``inf`` for the overflow bucket); ``None`` if it is empty.
    """
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    for bound, cumulative in buckets.items():
        if cumulative >= q * total:
            return bound
    return math.inf


def top_bound(buckets: Mapping[float, float]) -> float | None:
    """The upper bound of the highest non-empty bucket (``inf``: overflow)."""
    previous = 0.0
    top = None
    for bound, cumulative in buckets.items():
        if cumulative > previous:
            top = bound
        previous = cumulative
    return top


def share_within(buckets: Mapping[float, float], bound: float) -> float | None:
    """The fraction of observations at or below ``bound`` (a bucket bound)."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    return buckets.get(bound, 0.0) / total


def format_bound(seconds: float | None, buckets: Mapping[float, float] | None = None) -> str:
    """A bucket bound for a table: "<=20ms", ">5s" (past the last bound), "-"."""
    if seconds is None:
        return "-"
    if math.isinf(seconds):
        finite = [bound for bound in buckets or () if not math.isinf(bound)]
        return f">{_seconds(max(finite))}" if finite else ">max"
    return f"<={_seconds(seconds)}"


def _seconds(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"
