"""A node's `/metrics`, read as a client: scrape, pick samples, take quantiles of histograms."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


class ScrapeError(Exception):
    """A `/metrics` that cannot be fetched or read; the message is one line naming the URL."""


@dataclass(frozen=True, slots=True)
class Scrape:
    """One reading of a `/metrics`: every sample by name and sorted labels."""

    samples: Mapping[tuple[str, Labels], float]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels, or None."""
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def total(self, name: str, **labels: str) -> float | None:
        """The sum over every sample of `name` whose labels include `labels` (None: none)."""
        want = set(labels.items())
        found = [v for (n, ls), v in self.samples.items() if n == name and want <= set(ls)]
        return sum(found) if found else None

    def buckets(self, histogram: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of a histogram without other labels, by bound."""
        out = []
        for (name, labels), value in self.samples.items():
            if name == f"{histogram}_bucket":
                le = dict(labels).get("le")
                if le is not None:
                    out.append((float(le), value))
        return sorted(out)


def parse(text: str) -> Scrape:
    """The Prometheus text exposition format (what `/metrics` serves)."""
    samples: dict[tuple[str, Labels], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    except ValueError as exc:
        raise ScrapeError(f"not the Prometheus text format: {exc}") from None
    return Scrape(samples)


def scrape(url: str, *, timeout: float = 10.0) -> Scrape:
    """Fetch and parse one `/metrics`; every fault is a ScrapeError naming `url`."""
    if not url.startswith(("http://", "https://")):
        raise ScrapeError(f"{url}: not an http:// or https:// URL")
    try:
        with urllib.request.urlopen(
            url, timeout=timeout
        ) as response:  # http(s) only, checked above
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise ScrapeError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ScrapeError(f"{url}: cannot fetch: {reason}") from None
    try:
        return parse(body.decode("utf-8"))
    except (UnicodeDecodeError, ScrapeError) as exc:
        raise ScrapeError(f"{url}: {exc}") from None


def bucket_delta(
    before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The observations made between two readings of one histogram's buckets."""
    old = dict(before)
    return [(le, count - old.get(le, 0.0)) for le, count in after]


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram, as PromQL's histogram_quantile estimates it: linear
    within the bucket that holds it, the bucket's lower bound starting at 0 for the first; in
    the +Inf bucket, the highest finite bound. None when the histogram holds no observation."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not within [0, 1]")
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank and count > lower_count:
            if math.isinf(le):
                return lower_bound
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = (le if not math.isinf(le) else lower_bound), count
    return lower_bound
