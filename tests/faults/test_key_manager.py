"""Key manager faults under load through real Envoy (HTTP ext_authz mode) -> ``authz serve`` -> the echo upstream,
with the loopback key manager of :mod:`authz.dev.keymanager` made to fail on purpose.

* During a JWKS refresh (every second here) the key manager is down, slow (past ``jwks.timeout``), answers 500,
  garbage, or an empty key set: authz keeps verifying with its cached keys; valid tokens allowed, forged and
  unknown-kid tokens 401, nothing failed.
* Cold start with the key manager down: every check is denied 503 (never 401 for a valid token, never an allow)
  until the key manager is back; then valid tokens are allowed within the kid refetch cooldown (a check forces
  the fetch), however far away the background retry's backoff is.
* Key rotation under attack (``--workers 2``, default JWKS timings): after unknown-kid tokens reached every worker
  through Envoy, and while they keep coming, a token signed with a newly published key is refused (401, never
  503) for at most the kid refetch cooldown after publication, then allowed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from authz.config.key_managers import JwksSettings
from authz.dev.keymanager import KeyManager, SigningKey
from authz.dev.procs import RedisServer
from authz.dev.upstream import EchoUpstream
from tests.faults.load import Shot, driving, report
from tests.faults.stack import (
    Authz,
    Gateway,
    config_doc,
    forged,
    fresh_tokens,
    key_manager,
    seed,
    serving,
    unknown_kid,
    valid,
)
from tests.support.e2e import drop_keys

pytestmark = pytest.mark.e2e

JWKS = "/oauth2/jwks"


@dataclass
class KmStack:
    km: KeyManager
    authz: Authz
    gateway: Gateway


@pytest.fixture(scope="module")
def upstream() -> Iterator[EchoUpstream]:
    server = EchoUpstream()
    server.start()
    yield server
    server.stop()


@contextmanager
def _km_stack(redis_server: RedisServer, upstream: EchoUpstream, tmp: Path, prefix: str, *, down: bool = False,
              workers: int = 1, **jwks: float) -> Iterator[KmStack]:
    """A key manager (``down``: stopped before authz starts), ``authz serve`` with ``workers`` and the given ``jwks``
    timings, Envoy in HTTP mode; stopped on exit."""
    km = key_manager()
    doc = config_doc(km, redis_server.url, prefix, workers=workers, **jwks)
    seed(doc)
    if down:
        km.stop()
    try:
        with serving(tmp, doc, upstream.port) as (authz, gateways):
            yield KmStack(km, authz, gateways["http"])
    finally:
        km.stop()
        drop_keys(redis_server, prefix)


@pytest.fixture
def km_stack(redis_server: RedisServer, upstream: EchoUpstream, tmp_path: Path) -> Iterator[Callable[..., KmStack]]:
    """Start this test's stack (:func:`_km_stack`)."""
    with ExitStack() as stacks:
        yield lambda **options: stacks.enter_context(
            _km_stack(redis_server, upstream, tmp_path, f"faults-km-{uuid.uuid4().hex[:8]}:", **options))


@pytest.fixture(scope="module")
def refreshing(redis_server: RedisServer, upstream: EchoUpstream,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmStack]:
    """The stack of the refresh faults: the key set refreshed every second, a failed fetch retried after 0.2 s."""
    with _km_stack(redis_server, upstream, tmp_path_factory.mktemp("faults-km"), "faults-km-refresh:",
                   refresh_interval=1, retry_interval=0.2) as stack:
        yield stack


def _mix(km: KeyManager) -> list[Shot]:
    return [Shot("warm", valid(km)), Shot("fresh", fresh_tokens(km, 200)), Shot("forged", forged(km), True),
            Shot("unknown-kid", unknown_kid(km), True)]


@contextmanager
def _faulty(km: KeyManager, fault: str) -> Iterator[None]:
    """The key manager's JWKS endpoint failing as ``fault`` says, restored on exit."""
    if fault == "down":
        km.stop()
    elif fault == "slow":
        km.jwks_delay = 3.0  # past jwks.timeout (2 s)
    elif fault == "500":
        km.jwks_status = 500
    else:
        km.jwks_body = {"garbage": b'{"keys": [{"kty": "RSA", "n": "!!", ', "empty": b'{"keys": []}'}[fault]
    try:
        yield
    finally:
        if fault == "down":
            km.start(port=km.port)
        km.jwks_delay, km.jwks_status, km.jwks_body = 0.0, 200, None


def _fetch_failures(authz: Authz) -> int:
    return authz.proc.log_text().count("jwks test-km: fetch from")


@pytest.mark.parametrize("fault", ["down", "slow", "500", "garbage", "empty"])
def test_a_key_manager_fault_during_a_refresh_keeps_serving_from_the_cached_keys(
        refreshing: KmStack, fault: str, record_property) -> None:  # noqa: ANN001
    s = refreshing
    before = _fetch_failures(s.authz)
    seconds = 5.0 if fault == "slow" else 3.5  # a slow fetch fails after jwks.timeout (2 s)
    with driving(s.gateway.url, _mix(s.km), seconds=seconds) as tally:
        time.sleep(0.5)
        with _faulty(s.km, fault):
            deadline = time.monotonic() + 4.0  # a refresh comes within 1 s; a slow one fails after jwks.timeout (2 s)
            while (failures := _fetch_failures(s.authz) - before) < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # and the load goes on a little against the failed refresh
        fault_ended = tally.clock()
    report(tally, f"key-manager-{fault}", record_property)
    assert failures >= 1  # a refresh met the fault (and was logged as a failed fetch, keeping the cached keys)
    assert tally.select(since=fault_ended) and tally.sent == 200 * seconds  # the load covered the whole fault
    assert tally.wrong_allows == 0
    assert tally.failed == 0, tally.failures()
    assert tally.statuses("warm") == {200: len(tally.select("warm"))}
    assert tally.statuses("fresh") == {200: len(tally.select("fresh"))}
    assert tally.statuses("forged") == {401: len(tally.select("forged"))}
    assert tally.statuses("unknown-kid") == {401: len(tally.select("unknown-kid"))}


def test_cold_start_with_the_key_manager_down_denies_503_until_it_is_back(
        km_stack: Callable[..., KmStack], record_property) -> None:  # noqa: ANN001
    cooldown = 2.0
    s = km_stack(down=True, retry_interval=30, refresh_interval=300, kid_refetch_cooldown=cooldown)
    mix = [Shot("valid", fresh_tokens(s.km, 300)), Shot("forged", forged(s.km), True)]
    with driving(s.gateway.url, mix, seconds=5) as tally:
        time.sleep(1.5)
        s.km.start(port=s.km.port)
        back = tally.clock()
    report(tally, "key-manager-cold-start", record_property)
    assert tally.wrong_allows == 0
    assert tally.failed == 0, tally.failures()
    down = [r for r in tally.results if r.at + r.took < back]
    assert down and {r.status for r in down} == {503}  # no keys yet: unavailable, never 401, never an allow
    first = min((r.at for r in tally.select("valid") if r.status == 200), default=tally.clock())
    later = tally.select("valid", since=first)
    assert {r.status for r in later} == {200}  # from the first allow on, every valid token is allowed
    # The background retry is 30 s away: the fetch a check forced (one per cooldown) picked the keys up.
    assert first - back <= cooldown + 1.0
    assert tally.statuses("forged", since=first) == {401: len(tally.select("forged", since=first))}


def test_rotation_under_attack_refuses_a_new_key_for_at_most_the_cooldown(
        km_stack: Callable[..., KmStack], record_property) -> None:  # noqa: ANN001
    cooldown, wait = JwksSettings().kid_refetch_cooldown, JwksSettings().forced_refetch_wait
    s = km_stack(workers=2, refresh_interval=300, kid_refetch_cooldown=cooldown, forced_refetch_wait=wait)
    km = s.km
    assert km.requests[JWKS] == 2  # each worker's prefetch
    attack = [httpx.get(s.gateway.url + "/orders/v1/items", headers={"authorization": f"Bearer {unknown_kid(km)}"},
                        timeout=5).status_code for _ in range(6)]
    assert attack == [401] * 6
    assert km.requests[JWKS] == 4  # each worker (Envoy's round robin) spent its refetch on the attacker's kids
    k2 = SigningKey.generate_rsa(kid="k2")
    km.published_keys = [km.signing_key, k2]
    published = time.monotonic()
    new = km.issue_token("demo-client", "faults", "orders:read", key=k2)
    mix = [Shot("new", new), Shot("old", valid(km)),
           Shot("attack", lambda: unknown_kid(km), True)]
    with driving(s.gateway.url, mix, seconds=cooldown + 2) as tally:
        pass
    report(tally, "rotation-under-attack", record_property)
    assert tally.wrong_allows == 0
    assert tally.failed == 0, tally.failures()
    assert set(tally.statuses("new")) == {200, 401}  # refused: 401 (an unknown kid), never a 503
    last_refused = max(r.at for r in tally.select("new") if r.status == 401)
    window = last_refused + (tally.start - published)
    print(f"rotation under attack: new key refused for {window:.2f} s after publication (cooldown {cooldown} s, "
          f"wait {wait} s), JWKS fetches {km.requests[JWKS]}")
    assert cooldown - wait - 1.5 < window <= cooldown  # the attack held the key out, for no longer than the cooldown
    assert tally.statuses("new", since=last_refused + 0.5) == {200: len(tally.select("new", since=last_refused + 0.5))}
    assert tally.statuses("old") == {200: len(tally.select("old"))}
    assert tally.statuses("attack") == {401: len(tally.select("attack"))}
