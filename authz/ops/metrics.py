"""The Prometheus metrics of authz: every metric defined in :class:`Metrics`, and their update from the plain
counters the hot path keeps (:class:`MetricsUpdater`).

The hot path never touches a Prometheus object: the front ends count decisions in their
:class:`authz.decide.record.DecisionRecorder`, every :class:`authz.cache.BoundedCache` counts its hits and misses,
the JWKS caches and the registry cache count their fetches, errors and events, all in plain integers.
:meth:`MetricsUpdater.update` copies what changed into the metrics below, off the hot path:

* one worker (``server.metrics_listen`` served by the process itself): just before each scrape;
* several workers (``authz serve --workers N``): every :data:`UPDATE_INTERVAL` seconds and once more on shutdown,
  into prometheus-client's multiprocess files, which the supervisor sums at each scrape
  (:mod:`authz.ops.metrics_http`). Counters and histograms of a worker that exited stay in the sum; gauges use the
  ``live*`` modes, so a dead worker's gauges leave the scrape (the supervisor calls ``mark_process_dead``).

What each metric tells an operator is in docs/operations.md (``#metrics``).
"""

from __future__ import annotations

import platform
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from authz.cache import BoundedCache
from authz.decide.record import ALLOW_CODE, DURATION_BUCKETS, DecisionRecorder
from authz.keys.jwk import KeySource
from authz.keys.jwks_cache import JwksCache
from authz.registry.cache import RegistryCache
from authz.registry.durability import DURABLE

UPDATE_INTERVAL = 1.0
"""Seconds between two copies of a worker's counters into the multiprocess files (with ``--workers N``)."""


class Metrics:
    """Every metric authz exports.

    Args:
        registry: where they are registered (one worker: the registry the process serves); None in a worker of
            several, whose values go to the multiprocess files only.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.checks = Counter(
            "authz_checks", "Checks answered, by front end (grpc, http), API id (empty: none matched), result "
            "(allow, deny) and code (the error table's code, or ok).", ("mode", "api", "result", "code"), registry=r)
        self.duration = Histogram(
            "authz_check_duration_seconds", "Time from receiving a check to its answer, in authz (without the "
            "transport).", ("mode",), buckets=DURATION_BUCKETS, registry=r)
        self.cache_hits = Counter("authz_cache_hits", "Lookups answered by the cache, per cache.", ("cache",),
                                  registry=r)
        self.cache_misses = Counter("authz_cache_misses", "Lookups the cache could not answer, per cache.",
                                    ("cache",), registry=r)
        self.cache_entries = Gauge("authz_cache_entries", "Entries held, per cache (summed over the workers).",
                                   ("cache",), multiprocess_mode="livesum", registry=r)
        self.jwks_fetches = Counter(
            "authz_jwks_fetches", "JWKS fetches per key manager and outcome (ok, error: the last good key set is "
            "kept).", ("key_manager", "outcome"), registry=r)
        self.jwks_keys = Gauge(
            "authz_jwks_keys", "Usable keys in the key manager's current key set (the fewest of any worker).",
            ("key_manager",), multiprocess_mode="livemin", registry=r)
        self.jwks_age = Gauge(
            "authz_jwks_seconds_since_success", "Seconds since the key manager's JWKS was last fetched successfully "
            "(the oldest of any worker); keys stop deciding past its refresh interval + jwks.max_stale.",
            ("key_manager",), multiprocess_mode="livemax", registry=r)
        self.redis_errors = Counter(
            "authz_redis_errors", "Registry store calls that failed, by error (unavailable: unreachable, slow or a "
            "command error; corrupt_record).", ("error",), registry=r)
        self.redis_reconnects = Counter(
            "authz_redis_reconnects", "Times the registry event subscription was made again after it was lost.",
            registry=r)
        self.redis_stale = Gauge(
            "authz_redis_stale_seconds", "Seconds since Redis last answered, while it fails (0 when it answers): "
            "how long authz has been deciding from its cache alone (the longest of any worker).",
            multiprocess_mode="livemax", registry=r)
        self.redis_stale_answers = Counter(
            "authz_redis_stale_answers", "Registry lookups answered from an expired cache entry because Redis did "
            "not answer.", registry=r)
        self.registry_events = Counter(
            "authz_registry_events", "Registry write events received (each clears the local registry cache).",
            registry=r)
        self.registry_rollbacks = Counter(
            "authz_registry_rollbacks", "Times the registry's write sequence number went back: Redis served an "
            "older copy of the registry, and writes acknowledged after it were lost.", registry=r)
        self.registry_durable = Gauge(
            "authz_registry_durable", "1 while the registry's Redis keeps every acknowledged write (AOF, "
            "appendfsync always) and no rollback was seen; else 0 (the lowest of any worker).",
            multiprocess_mode="livemin", registry=r)
        self.revocations_kept = Counter(
            "authz_revocations_kept", "Checks denied by a revocation this process remembers although the registry, "
            "at a later write, held neither it nor its withdrawal (a lost write).", registry=r)
        self.config_reloads = Counter(
            "authz_config_reloads", "Config reloads (SIGHUP, server.watch_config), by result: applied, or rejected "
            "(invalid file: the running config kept; the errors are in the log).", ("result",), registry=r)
        self.revocations_forgotten = Counter(
            "authz_revocations_forgotten_early", "Live revocations forgotten before their end because more than "
            "redis.revocation_cache_size were remembered at once.", registry=r)


def build_labels(envoy_mode: str) -> dict[str, str]:
    """The labels of ``authz_build_info``: ``version``, ``python``, ``grpcio`` and ``envoy_mode``."""

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "unknown"

    return {"version": of("authz"), "python": platform.python_version(), "grpcio": of("grpcio"),
            "envoy_mode": envoy_mode}


class BuildInfo(Collector):
    """``authz_build_info`` (always 1), served by whichever process serves the scrape.

    Args:
        envoy_mode: ``grpc``, or ``grpc+http`` when ``server.http_listen`` is set.
    """

    def __init__(self, envoy_mode: str) -> None:
        self._labels = build_labels(envoy_mode)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("authz_build_info", "authz version, Python, grpcio and the Envoy ext_authz modes "
                                   "served; always 1.", labels=list(self._labels))
        family.add_metric(list(self._labels.values()), 1)
        yield family


@dataclass
class MetricSources:
    """What the metrics are read from, besides every live :class:`BoundedCache`.

    Attributes:
        recorders: the front ends' decision recorders.
        keys: the key source of each key manager.
        registry: the registry cache.
        reloads: config reloads by result.
    """

    recorders: Sequence[DecisionRecorder]
    keys: Mapping[str, KeySource]
    registry: RegistryCache
    reloads: Mapping[str, int] = field(default_factory=dict)
    """Config reloads by result (``applied``, ``rejected``): :attr:`authz.ops.reload.ConfigReloader.counts`."""


class MetricsUpdater:
    """Copies the plain counters of :class:`MetricSources` and of the caches into :class:`Metrics`.

    Counters advance by what changed since the previous :meth:`update`; gauges are set. Run it on the event loop's
    thread (the one the hot path runs on).

    Args:
        metrics: the metrics.
        sources: what they are read from.
    """

    def __init__(self, metrics: Metrics, sources: MetricSources) -> None:
        self._m = metrics
        self._sources = sources
        self._caches: weakref.WeakKeyDictionary[BoundedCache[object, object], tuple[int, int]] = (
            weakref.WeakKeyDictionary())
        self._seen: dict[tuple[str, ...], float] = {}
        self._cache_names: set[str] = set()
        self._jwks_sources: dict[str, JwksCache] = {}

    def _advance(self, key: tuple[str, ...], total: float) -> float:
        """How much ``total`` grew since the last call for ``key``."""
        delta = total - self._seen.get(key, 0)
        self._seen[key] = total
        return max(delta, 0)

    def update(self) -> None:
        """Copy every change into the metrics."""
        m, sources = self._m, self._sources
        for recorder in sources.recorders:
            counts, buckets, seconds = recorder.take()
            for (api, code), n in counts.items():
                allow = code == ALLOW_CODE
                m.checks.labels(recorder.mode, api, "allow" if allow else "deny", "ok" if allow else str(code)).inc(n)
            if any(buckets):
                child = m.duration.labels(recorder.mode)
                # A Histogram has no public way to add counted observations: its per-bucket values (not
                # cumulative) and sum are advanced directly (pinned by tests/test_metrics.py).
                for index, n in enumerate(buckets):
                    if n:
                        child._buckets[index].inc(n)  # noqa: SLF001
                child._sum.inc(seconds)  # noqa: SLF001
        self._update_caches()
        for name, source in sources.keys.items():
            keyset = source.keyset
            m.jwks_keys.labels(name).set(len(keyset.keys) if keyset is not None else 0)
            self._count_fetches(name, source)
            if isinstance(source, JwksCache):
                age = source.seconds_since_fetch()
                m.jwks_age.labels(name).set(age if age is not None else float("inf"))
        registry = sources.registry
        for error, total in registry.errors.items():
            m.redis_errors.labels(error).inc(self._advance(("redis", error), total))
        m.redis_reconnects.inc(self._advance(("reconnects",), registry.reconnects))
        m.redis_stale_answers.inc(self._advance(("stale_answers",), registry.stale_answers))
        m.registry_events.inc(self._advance(("events",), registry.events))
        m.registry_rollbacks.inc(self._advance(("rollbacks",), registry.sequence.rollbacks))
        m.revocations_kept.inc(self._advance(("revocations_kept",), registry.revocations.contradicted))
        m.revocations_forgotten.inc(self._advance(("revocations_forgotten",), registry.revocations.dropped))
        m.registry_durable.set(1 if registry.health().level == DURABLE else 0)
        m.redis_stale.set(registry.stale_seconds())
        for result, total in sources.reloads.items():
            m.config_reloads.labels(result).inc(self._advance(("reloads", result), total))

    def _count_fetches(self, name: str, source: KeySource) -> None:
        """Advance ``authz_jwks_fetches_total`` of key manager ``name``. A config reload may replace its source
        (a new one counts from 0): the fetches the replaced one made since the last update are counted first,
        then it is forgotten, so the counter never loses nor repeats a fetch."""
        previous = self._jwks_sources.get(name)
        if previous is not None and previous is not source:
            self._advance_fetches(name, previous)
            for outcome in previous.fetches:
                self._seen.pop(("jwks", name, outcome), None)
        if isinstance(source, JwksCache):
            self._jwks_sources[name] = source
            self._advance_fetches(name, source)
        else:
            self._jwks_sources.pop(name, None)

    def _advance_fetches(self, name: str, source: JwksCache) -> None:
        for outcome, total in source.fetches.items():
            self._m.jwks_fetches.labels(name, outcome).inc(self._advance(("jwks", name, outcome), total))

    def _update_caches(self) -> None:
        m = self._m
        entries: dict[str, int] = {}
        for cache in BoundedCache.live():
            hits, misses = self._caches.get(cache, (0, 0))
            m.cache_hits.labels(cache.name).inc(max(cache.hits - hits, 0))
            m.cache_misses.labels(cache.name).inc(max(cache.misses - misses, 0))
            self._caches[cache] = (cache.hits, cache.misses)
            entries[cache.name] = entries.get(cache.name, 0) + len(cache)
        self._cache_names.update(entries)
        for name in self._cache_names:  # a cache that is gone holds nothing
            m.cache_entries.labels(name).set(entries.get(name, 0))

