"""Key rotation under an attacker's unknown kids (issue point 4, field case C02 kept): the window in which a valid
token signed with a just-published key is refused is at most ``kid_refetch_cooldown - forced_refetch_wait``,
whatever is sent, and none at all when the cooldown fits inside the wait.

In process (one :class:`JwksCache`, a real key manager on loopback) and through ``authz serve --workers 2``
(real processes, real gRPC Checks to each worker, the default cooldown).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import Settings
from authz.config.key_managers import JwksSettings
from authz.dev.keymanager import KeyManager, SigningKey
from authz.dev.procs import RedisServer
from authz.errors import Denial, Reason
from authz.ops.supervisor import worker_listen
from tests.support.config import free_consecutive_ports, settings_dict
from tests.support.processes import seed_demo_app, serve_config
from tests.support.tokencraft import claims, running_validator, sign
from tests.test_registry_processes import ALLOW, Checker, Verdict

JWKS = "/oauth2/jwks"
INVALID_TOKEN = Verdict(16, 401, 900901)


def _jwks(**jwks: float) -> dict[str, Any]:
    return {"km": {"jwks": {"refresh_interval": 300, "timeout": 2, "retry_interval": 0.2, **jwks}}}


ATTACKER = SigningKey.generate_rsa(kid="attacker")


def _attack_token(idp: KeyManager, client_id: str = "app-123") -> str:
    """What anyone can send: the issuer's claims, a kid nobody published, a key of the attacker's own."""
    return sign(ATTACKER, claims(idp, client_id), kid=uuid.uuid4().hex)


async def _validate(validator: Any, token: str) -> str:
    try:
        await validator.validate(token)
    except Denial as denial:
        assert denial.reason is Reason.INVALID_CREDENTIALS, denial  # 401, never a 503
        return "refused"
    return "allowed"


def test_the_default_cooldown_is_five_seconds_and_the_wait_fits_the_decision_budget() -> None:
    defaults = JwksSettings()
    assert (defaults.kid_refetch_cooldown, defaults.forced_refetch_wait) == (5.0, 0.2)


async def test_an_attackers_kid_holds_a_new_key_out_for_at_most_cooldown_minus_wait(
    idp: KeyManager, make_settings: Callable[..., Settings],
) -> None:
    cooldown, wait = 0.8, 0.2
    k2 = SigningKey.generate_rsa(kid="k2")
    async with running_validator(make_settings(**_jwks(kid_refetch_cooldown=cooldown, forced_refetch_wait=wait))) as (
            validator, caches):
        assert await _validate(validator, _attack_token(idp)) == "refused"  # forces the one fetch of the window
        assert idp.requests[JWKS] == 2
        idp.published_keys = [idp.signing_key, k2]
        published = time.monotonic()
        valid = sign(k2, claims(idp))
        results: list[tuple[float, float, str]] = []
        while not results or results[-1][2] != "allowed":
            sent = time.monotonic()
            verdict = await _validate(validator, valid)
            results.append((sent, time.monotonic(), verdict))
            assert sent - published < cooldown + 1, results[-5:]
            await asyncio.sleep(0.01)
        refused = [r for r in results if r[2] == "refused"]
        window = refused[-1][1] - published if refused else 0.0
        first_allowed_sent = results[-1][0] - published
        print(f"\nrefused window {window * 1000:.0f} ms (cooldown {cooldown * 1000:.0f} ms, wait {wait * 1000:.0f} ms); "
              f"{len(refused)} valid checks refused; the allowed one arrived {first_allowed_sent * 1000:.0f} ms "
              f"after publication and waited {(results[-1][1] - results[-1][0]) * 1000:.0f} ms")
        # At most cooldown - wait, plus the key manager's answer time (milliseconds on loopback).
        assert cooldown - wait - 0.15 < window <= cooldown - wait + caches["test-km"].fetch_seconds + 0.02
        assert results[-1][1] - results[-1][0] > 0.05  # the check that got the new key had waited for the refetch
        assert idp.requests[JWKS] == 3  # prefetch, the attacker's refetch, the one at the end of the cooldown
        for _ in range(5):
            assert await _validate(validator, sign(k2, claims(idp))) == "allowed"
        assert idp.requests[JWKS] == 3


async def test_a_cooldown_within_the_wait_refuses_no_valid_token_under_a_sustained_attack(
    idp: KeyManager, make_settings: Callable[..., Settings],
) -> None:
    cooldown, wait = 0.1, 0.3
    settings = make_settings(**_jwks(kid_refetch_cooldown=cooldown, forced_refetch_wait=wait))
    async with running_validator(settings) as (validator, _):
        stop = asyncio.Event()

        async def attack() -> list[str]:
            out = []
            while not stop.is_set():
                out.append(await _validate(validator, _attack_token(idp)))
                await asyncio.sleep(0.005)
            return out

        attackers = [asyncio.ensure_future(attack()) for _ in range(4)]
        started = time.monotonic()
        verdicts = []
        for round_ in range(6):  # a new key every 0.2 s, each used at once
            await asyncio.sleep(0.2)
            key = SigningKey.generate_rsa(kid=f"r{round_}")
            idp.published_keys = [*idp.published_keys, key]
            verdicts += await asyncio.gather(*(_validate(validator, sign(key, claims(idp))) for _ in range(5)))
        stop.set()
        attacks = [verdict for each in await asyncio.gather(*attackers) for verdict in each]
        elapsed = time.monotonic() - started
        assert verdicts == ["allowed"] * 30
        assert set(attacks) == {"refused"} and len(attacks) > 50
        forced = idp.requests[JWKS] - 1
        print(f"\n{len(attacks)} unknown-kid checks in {elapsed:.2f} s, 30 checks with just-published keys all "
              f"allowed, {forced} forced fetches (cooldown {cooldown} s)")
        assert forced <= elapsed / cooldown + 1


# ---- through real worker processes --------------------------------------------------------------------------


@pytest.fixture
def two_workers(idp: KeyManager, redis_server: RedisServer, key_prefix: str, tmp_path: Path) -> Iterator[list[str]]:
    """``authz serve --workers 2`` with the default JWKS timings; yields the two workers' addresses."""
    doc = settings_dict(idp, redis_server.url, key_prefix, **_jwks())
    doc["server"].update(listen=f"127.0.0.1:{free_consecutive_ports()}", workers=2)
    seed_demo_app(doc)
    config = tmp_path / "authz.yaml"
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    proc = serve_config(config, tmp_path, "supervisor", doc["server"]["listen"], workers=2)
    try:
        yield [worker_listen(doc["server"]["listen"], i) for i in range(2)]
    finally:
        proc.stop(timeout=20)


def test_one_unknown_kid_per_worker_then_a_rotation_is_refused_for_at_most_the_cooldown(
    idp: KeyManager, two_workers: list[str],
) -> None:
    cooldown, wait = JwksSettings().kid_refetch_cooldown, JwksSettings().forced_refetch_wait
    checkers = [Checker(w) for w in two_workers]
    try:
        warm = idp.issue_token("demo-client", "demo", "orders:read")
        assert [c.check(warm) for c in checkers] == [ALLOW, ALLOW]
        fetched = idp.requests[JWKS]
        assert fetched == 2  # each worker's prefetch
        attack = _attack_token(idp, "demo-client")
        assert [c.check(attack) for c in checkers] == [INVALID_TOKEN, INVALID_TOKEN]
        assert idp.requests[JWKS] == 4  # one forced fetch per worker: its cooldown now runs
        k2 = SigningKey.generate_rsa(kid="k2")
        idp.published_keys = [idp.signing_key, k2]
        published = time.monotonic()
        token = idp.issue_token("demo-client", "demo", "orders:read", key=k2)
        log: list[tuple[int, float, Verdict]] = []
        allowed: set[int] = set()
        while len(allowed) < 2:
            for i, c in enumerate(checkers):
                verdict = c.check(token)
                log.append((i, time.monotonic() - published, verdict))
                if verdict == ALLOW:
                    allowed.add(i)
            assert time.monotonic() - published < cooldown + 3, log[-4:]
            time.sleep(0.02)
        for _ in range(10):  # from now on every check of either worker allows it
            assert [c.check(token) for c in checkers] == [ALLOW, ALLOW]
        assert {v for _, _, v in log} <= {INVALID_TOKEN, ALLOW}  # a refused valid token is a 401, never a 503
        windows = [max((t for j, t, v in log if j == i and v != ALLOW), default=0.0) for i in range(2)]
        refused = sum(1 for _, _, v in log if v != ALLOW)
        print(f"\nrotation under attack through 2 workers (cooldown {cooldown:.0f} s, wait {wait:.1f} s): refused "
              f"window {windows[0]:.2f} s and {windows[1]:.2f} s after publication, {refused} of {len(log)} checks "
              f"with the new key refused (401), JWKS fetches {idp.requests[JWKS]}")
        assert max(windows) <= cooldown
        assert max(windows) > cooldown - wait - 1.0  # the attack did hold the key out: the test measured something
        assert idp.requests[JWKS] == 6  # + one per worker when its cooldown ended
    finally:
        for c in checkers:
            c.close()
