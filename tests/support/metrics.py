"""Reading a Prometheus scrape in tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of ``GET url``: ``(name, labels) -> value``.

    Raises:
        AssertionError: the answer is not 200 with the Prometheus text format.
    """
    r = httpx.get(url, timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version="), r.headers
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly these labels, or None."""
    return samples.get((name, frozenset(labels.items())))


def wait_for(url: str, predicate: Callable[[Samples], bool], timeout: float = 15.0) -> Samples:
    """Scrape ``url`` until ``predicate`` holds for the samples; returns them.

    Raises:
        AssertionError: not within ``timeout`` seconds (the last scrape's authz samples in the message).
    """
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if predicate(samples):
            return samples
        if time.monotonic() > deadline:
            shown = sorted((n, dict(labels), v) for (n, labels), v in samples.items() if n.startswith("authz_"))
            raise AssertionError(f"condition not met within {timeout}s; last scrape: {shown}")
        time.sleep(0.2)
