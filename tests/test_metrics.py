"""The metrics copied from the hot path's plain counters (authz.ops.metrics): exact counts and histogram buckets,
every cache, the JWKS caches and the registry cache through a real Redis outage."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from time import perf_counter

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from authz.cache import BoundedCache
from authz.config import Settings
from authz.decide.pipeline import Check
from authz.decide.record import DecisionRecorder
from authz.decide.routes import RouteTable
from authz.dev.keymanager import KeyManager
from authz.dev.procs import RedisServer
from authz.errors import Denial, Reason
from authz.keys.jwks_cache import JwksCache
from authz.model import Request
from authz.ops.metrics import Metrics, MetricSources, MetricsUpdater
from authz.registry.admin import RegistryAdmin
from authz.registry.cache import RegistryCache
from authz.registry.memory import MemoryStore
from authz.registry.redis_store import RedisStore
from tests.support.metrics import Samples, sample


def _samples(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _routed(settings: Settings) -> Check:
    request = Request("GET", "/orders/v1/items", "api.test", {}, {"api_id": "orders-v1"})
    check = Check(request)
    check.route = RouteTable(settings.apis).resolve(request)
    return check


def test_decisions_are_exported_exactly_once_with_the_histogram_buckets_they_fell_in(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    recorder = DecisionRecorder("grpc")
    registry = CollectorRegistry()
    updater = MetricsUpdater(Metrics(registry), MetricSources([recorder], {}, RegistryCache(MemoryStore(),
                                                                                            settings.redis)))
    check = _routed(settings)
    recorder.allowed(check, perf_counter() - 0.00003)   # bucket le=5e-05
    recorder.allowed(check, perf_counter() - 0.0015)    # bucket le=0.002
    recorder.denied(None, Denial(Reason.INVALID_REQUEST, "bad"), perf_counter() - 0.5, "adapt")  # le=+Inf
    updater.update()
    updater.update()  # nothing new: nothing counted twice
    s = _samples(registry)
    assert sample(s, "authz_checks_total", mode="grpc", api="orders-v1", result="allow", code="ok") == 2
    assert sample(s, "authz_checks_total", mode="grpc", api="", result="deny", code="900940") == 1
    buckets = {le: sample(s, "authz_check_duration_seconds_bucket", mode="grpc", le=le)
               for le in ("2e-05", "5e-05", "0.0001", "0.002", "0.02", "+Inf")}
    assert buckets == {"2e-05": 0, "5e-05": 1, "0.0001": 1, "0.002": 2, "0.02": 2, "+Inf": 3}
    assert sample(s, "authz_check_duration_seconds_count", mode="grpc") == 3
    assert 0.5015 < sample(s, "authz_check_duration_seconds_sum", mode="grpc") < 0.51  # type: ignore[operator]
    recorder.allowed(check, perf_counter())
    updater.update()
    assert sample(_samples(registry), "authz_checks_total", mode="grpc", api="orders-v1", result="allow",
                  code="ok") == 3


def test_every_live_cache_is_exported_and_a_cache_that_is_gone_holds_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    registry = CollectorRegistry()
    updater = MetricsUpdater(Metrics(registry), MetricSources([], {}, RegistryCache(MemoryStore(),
                                                                                    make_settings().redis)))
    cache: BoundedCache[str, int] = BoundedCache("metrics_test", 10)
    assert cache.get("a") is None
    cache.put("a", 1)
    assert cache.get("a") == 1 and cache.get("a") == 1
    updater.update()
    s = _samples(registry)
    assert (sample(s, "authz_cache_hits_total", cache="metrics_test"),
            sample(s, "authz_cache_misses_total", cache="metrics_test"),
            sample(s, "authz_cache_entries", cache="metrics_test")) == (2, 1, 1)
    del cache
    gc.collect()
    updater.update()
    assert sample(_samples(registry), "authz_cache_entries", cache="metrics_test") == 0


async def test_jwks_fetch_outcomes_keys_and_age_per_key_manager(
    make_settings: Callable[..., Settings], idp: KeyManager,
) -> None:
    settings = make_settings(km={"jwks": {"timeout": 0.5, "retry_interval": 60, "refresh_interval": 300}})
    registry = CollectorRegistry()
    # No keep-alive: once the key manager stops, the next fetch really fails.
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        jwks = JwksCache(settings.key_managers[0], client)
        down = JwksCache(settings.key_managers[0].model_copy(update={"name": "down-km",
                                                                     "jwks_uri": "http://127.0.0.1:9/jwks"}), client)
        updater = MetricsUpdater(Metrics(registry), MetricSources([], {"test-km": jwks, "down-km": down},
                                                                  RegistryCache(MemoryStore(), settings.redis)))
        assert await jwks.refresh() and not await down.refresh()
        idp.stop()
        assert not await jwks.refresh()  # failed: the last good key set is kept
        updater.update()
    s = _samples(registry)
    assert sample(s, "authz_jwks_fetches_total", key_manager="test-km", outcome="ok") == 1
    assert sample(s, "authz_jwks_fetches_total", key_manager="test-km", outcome="error") == 1
    assert sample(s, "authz_jwks_keys", key_manager="test-km") == 1
    assert 0 <= sample(s, "authz_jwks_seconds_since_success", key_manager="test-km") < 5  # type: ignore[operator]
    assert sample(s, "authz_jwks_keys", key_manager="down-km") == 0
    assert sample(s, "authz_jwks_seconds_since_success", key_manager="down-km") == float("inf")


async def test_a_redis_outage_shows_as_errors_stale_answers_and_stale_seconds_then_a_reconnect(
    make_settings: Callable[..., Settings],
) -> None:
    server = RedisServer().start()
    try:
        settings = make_settings(redis={"url": server.url, "key_prefix": "m:", "socket_timeout": 0.3,
                                        "cache_ttl": 0.2, "max_stale": 60})
        store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, 0.3)
        cache = RegistryCache(store, settings.redis)
        registry = CollectorRegistry()
        updater = MetricsUpdater(Metrics(registry), MetricSources([], {}, cache))
        await cache.start()
        try:
            admin = RegistryAdmin(store, settings)
            await admin.create_application("App", app_id="app")
            await admin.add_client("app", "c1")
            await admin.subscribe("app", "orders-v1")
            deadline = time.monotonic() + 5
            while cache.events < 3:
                assert time.monotonic() < deadline, "write events not received"
                await asyncio.sleep(0.05)
            assert (await cache.lookup("test-km", "c1", "orders-v1")).binding is not None
            server.stop()
            await asyncio.sleep(0.3)  # past cache_ttl: the entry is stale
            stale = await cache.lookup("test-km", "c1", "orders-v1")
            assert stale.binding is not None
            await asyncio.sleep(0.2)
            updater.update()
            down = _samples(registry)
            server.restart()
            deadline = time.monotonic() + 15
            while cache.reconnects < 1 or cache.stale_seconds() != 0:
                assert time.monotonic() < deadline, "the event subscription did not come back"
                await asyncio.sleep(0.1)
            updater.update()
            up = _samples(registry)
        finally:
            await cache.close()
            await store.aclose()
    finally:
        server.cleanup()
    assert sample(down, "authz_registry_events_total") == 3
    assert sample(down, "authz_redis_errors_total", error="unavailable") >= 1  # type: ignore[operator]
    assert sample(down, "authz_redis_stale_answers_total") == 1
    assert sample(down, "authz_redis_stale_seconds") >= 0.2  # type: ignore[operator]
    assert sample(up, "authz_redis_stale_seconds") == 0
    assert sample(up, "authz_redis_reconnects_total") >= 1  # type: ignore[operator]
    assert sample(up, "authz_redis_errors_total", error="corrupt_record") == 0


@pytest.mark.parametrize("decisions", ["none", "denies"])
def test_counting_off_records_nothing(decisions: str, make_settings: Callable[..., Settings]) -> None:
    recorder = DecisionRecorder("grpc", decisions, counting=False)
    recorder.allowed(_routed(make_settings()), perf_counter())
    assert recorder.counts == {} and sum(recorder.buckets) == 0


async def test_jwks_fetches_stay_exact_when_a_reload_replaces_the_key_source(
    make_settings: Callable[..., Settings], idp: KeyManager,
) -> None:
    """A reload swaps in a new JwksCache (counting from 0) for a changed key manager: the fetches the old one made
    since the last update are counted, and the new one's are counted from its first."""
    settings = make_settings(km={"jwks": {"timeout": 0.5, "retry_interval": 60, "refresh_interval": 300}})
    registry = CollectorRegistry()
    async with httpx.AsyncClient() as client:
        keys: dict[str, JwksCache] = {"test-km": JwksCache(settings.key_managers[0], client)}
        updater = MetricsUpdater(Metrics(registry), MetricSources([], keys, RegistryCache(MemoryStore(),
                                                                                          settings.redis)))
        for _ in range(3):
            old = keys["test-km"]
            assert await old.refresh()
            updater.update()
            assert await old.refresh()  # after the last update: only the replaced source knows of it
            keys["test-km"] = JwksCache(settings.key_managers[0], client)  # what Services.reconfigure does
        assert await keys["test-km"].refresh()
        updater.update()
    assert sample(_samples(registry), "authz_jwks_fetches_total", key_manager="test-km", outcome="ok") == 7
