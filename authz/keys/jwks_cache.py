"""JWKS cache of one key manager (RFC 7517): fetched with httpx, refreshed in the background.

Rules it keeps:

* the key set is prefetched at start and refreshed every ``jwks.refresh_interval`` seconds; a failed
  fetch is retried after ``jwks.retry_interval`` (doubling, capped at the refresh interval);
* an unknown ``kid`` forces at most one refetch per ``jwks.kid_refetch_cooldown`` seconds, shared by all
  concurrent callers (single-flight), whatever the number of distinct unknown kids; a check that arrives
  while the cooldown runs waits for the next permitted refetch when it comes within the check's own wait
  (``jwks.forced_refetch_wait``, less the key manager's answer time), else it is refused at once (401). So a
  valid token signed with a key published just after a refetch that an attacker's kid triggered is refused for
  at most ``kid_refetch_cooldown - forced_refetch_wait`` seconds plus the key manager's answer time, and never
  when the cooldown plus that answer time fits inside the wait (docs/security.md, "Key rotation");
* a check that finds no usable key set (a cold start, or past ``max_stale``) forces a fetch, within the same
  one-per-cooldown budget (not awaited: that check answers 503), so the keys are back within the cooldown of the
  key manager's return, whatever the retry backoff has grown to;
* a failed or garbage fetch never replaces a good key set; the last good set is used for
  ``jwks.max_stale`` seconds past its refresh time, then :class:`DependencyUnavailable` (503);
* keys that cannot be loaded (bad encoding, ``use: enc``, weak RSA) are skipped and logged, the others work
  (:func:`authz.keys.jwk.parse_jwks`);
* the refresh period follows the response's ``Cache-Control: max-age`` (minus ``Age``) bounded by
  ``jwks.min_refresh_interval`` and ``jwks.max_refresh_interval``; without it, ``jwks.refresh_interval``;
* with ``discovery``, the ``jwks_uri`` comes from the issuer's metadata (:mod:`authz.keys.discovery`), fetched
  before the first JWKS fetch and again after a failed one; metadata naming another issuer makes the key
  manager unusable (its tokens get 503) until it names the configured issuer.

Key managers with ``certificates`` use :class:`authz.keys.static.StaticKeys` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

import httpx

from authz.config import KeyManagerSettings
from authz.errors import Denial, DependencyUnavailable, Reason
from authz.keys.discovery import IssuerMismatch, discover_jwks_uri
from authz.keys.fetch import fetch_json, freshness, redact_url, refresh_period
from authz.keys.jwk import KeySet, VerificationKey, key_identity, parse_jwks, select_key
from authz.model import Step

log = logging.getLogger("authz.jwks")


class JwksCache:
    """The key set of one key manager from its JWKS: background refresh, rate-limited forced refetch
    (an :class:`authz.keys.jwk.KeySource`).

    Args:
        settings: the key manager's settings (``jwks_uri`` or ``discovery``, ``jwks.*``).
        client: an httpx client used for the fetches (TLS settings already applied: :func:`authz.keys.fetch.http_client`).
        clock: monotonic clock in seconds (tests may pass their own).

    Attributes:
        fetch_count: JWKS fetches attempted (discovery fetches not included).
        fetches: fetches by outcome, ``{"ok": n, "error": n}`` (a failed discovery counts as an ``error``).
        discovery_count: metadata fetches attempted (``discovery`` only).
        last_error: why the last fetch failed, or None after a success.
        fetch_seconds: how long the last successful JWKS fetch took (0 before the first).
        jwks_uri: the JWKS URL in use (configured or discovered), None before discovery succeeded.
    """

    def __init__(
        self,
        settings: KeyManagerSettings,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._client = client
        self._clock = clock
        self._keyset: KeySet | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self._last_forced = -math.inf
        self._fetch_started = -math.inf
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.fetch_count = 0
        self.fetch_seconds = 0.0
        self.fetches = {"ok": 0, "error": 0}
        self.discovery_count = 0
        self.jwks_uri: str | None = settings.jwks_uri

    @property
    def keyset(self) -> KeySet | None:
        """The current key set, or None before the first successful fetch."""
        return self._keyset

    def seconds_since_fetch(self) -> float | None:
        """Seconds since the last successful fetch (the current key set's), or None before the first one."""
        ks = self._keyset
        return None if ks is None else self._clock() - ks.fetched_at

    def usable(self) -> bool:
        """Whether the key set exists and is not older than its refresh interval + ``max_stale`` seconds."""
        ks = self._keyset
        if ks is None:
            return False
        return self._clock() - ks.fetched_at <= ks.refresh_interval + self.settings.jwks.max_stale

    def contains(self, key: VerificationKey) -> bool:
        """Whether ``key`` is still part of the current, usable key set (for cached verifications)."""
        ks = self._keyset
        return ks is not None and key in ks.keys and self.usable()

    async def start(self, initial_timeout: float | None = None) -> None:
        """Fetch once (waiting at most ``initial_timeout`` seconds), then keep refreshing in the background.

        A failed first fetch does not raise: the background loop retries and checks answer 503 until then.
        """
        first = asyncio.ensure_future(self.refresh())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(first), initial_timeout or self.settings.jwks.timeout + 1)
        self._task = asyncio.create_task(self._refresh_loop(), name=f"jwks-refresh-{self.name}")

    async def close(self) -> None:
        """Stop the background refresh."""
        for task in (self._task, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _refresh_loop(self) -> None:
        cfg = self.settings.jwks
        delay = cfg.retry_interval
        while True:
            if self._keyset is not None and self.last_error is None:
                age = self._clock() - self._keyset.fetched_at
                await asyncio.sleep(max(0.0, self._keyset.refresh_interval - age))
            else:
                await asyncio.sleep(delay)
            try:
                ok = await self.refresh()
            except Exception:  # never let the loop die: a dead loop means 503 after max_stale
                log.exception("jwks %s: refresh failed unexpectedly", self.name)
                ok = False
            delay = cfg.retry_interval if ok else min(delay * 2, cfg.refresh_interval)

    def refresh(self) -> asyncio.Future[bool]:
        """Fetch the JWKS now, joining a fetch already in flight (single-flight).

        Returns:
            An awaitable of True when a usable key set was stored, False when the fetch failed.
        """
        if self._inflight is None or self._inflight.done():
            self._fetch_started = self._clock()
            self._inflight = asyncio.ensure_future(self._fetch())
        return asyncio.shield(self._inflight)

    async def _fetch(self) -> bool:
        cfg = self.settings.jwks
        try:
            if self.jwks_uri is None:
                await self._discover()
            assert self.jwks_uri is not None
            self.fetch_count += 1
            started = self._clock()
            document, headers = await fetch_json(self._client, self.jwks_uri, cfg.timeout)
            took = self._clock() - started
            keys = parse_jwks(document, self.name)
            if not keys:
                raise ValueError("the key set has no usable signature key")
        except IssuerMismatch as exc:
            self.fetches["error"] += 1
            self.last_error = f"IssuerMismatch: {exc}"
            self._keyset = None  # keys found through metadata that names another issuer are not trusted
            log.error("key manager %s unusable: %s; checks with its tokens answer 503 until it matches",
                      self.name, exc)
            return False
        except Exception as exc:
            # Anything (HTTP, timeout, JSON nesting -> RecursionError, a bug in key loading) is a failed
            # fetch: it must neither replace the last good set nor escape into checks or the refresh loop.
            self.fetches["error"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            kept = "keeping the last good key set" if self._keyset is not None else "no key set yet"
            log.warning("jwks %s: fetch from %s failed (%s); %s", self.name,
                        redact_url(self.jwks_uri) if self.jwks_uri else "(discovery)", self.last_error, kept)
            if self.settings.discovery:
                self.jwks_uri = None  # the next attempt reads the metadata again (the jwks_uri may have moved)
            return False
        self._keyset = KeySet(
            keys=self._keep_unchanged(keys), fetched_at=self._clock(), refresh_interval=self._interval(headers)
        )
        self.fetch_seconds = took
        self.fetches["ok"] += 1
        if self.last_error is not None:
            log.info("jwks %s: fetch recovered, %d keys", self.name, len(keys))
        self.last_error = None
        return True

    async def _discover(self) -> None:
        self.discovery_count += 1
        assert self.settings.discovery is not None
        self.jwks_uri = await discover_jwks_uri(
            self._client, self.settings.discovery_issuer, self.settings.discovery, self.settings.jwks.timeout
        )
        log.info("key manager %s: discovered jwks_uri %s", self.name, redact_url(self.jwks_uri))

    def _interval(self, headers: httpx.Headers) -> float:
        """The refresh period: ``Cache-Control`` freshness within the configured bounds, else ``refresh_interval``."""
        return refresh_period(freshness(headers), self.settings.jwks)

    def _keep_unchanged(self, keys: tuple[VerificationKey, ...]) -> tuple[VerificationKey, ...]:
        """Reuse the previous objects of keys that did not change, so verified-token cache entries stay valid."""
        if self._keyset is None:
            return keys
        previous = {key_identity(k): k for k in self._keyset.keys}
        return tuple(previous.get(key_identity(k), k) for k in keys)

    async def signing_key(self, kid: str | None, alg: str, trace: list[Step] | None = None) -> VerificationKey:
        """Choose the key that verifies a token with header ``kid`` and ``alg``.

        A token that names a ``kid`` is matched only against keys with that ``kid``; an unknown ``kid``
        forces one refetch per cooldown. A token without ``kid`` uses the only key that fits ``alg``.

        Args:
            kid: the JWS header ``kid``, or None.
            alg: the JWS header ``alg``, already checked against the allow-list.
            trace: when given, a ``key`` step saying whether the key came from the cached key set or a refetch.
        Returns:
            The :class:`VerificationKey`.
        Raises:
            Denial: ``INVALID_CREDENTIALS`` when no key (or more than one, without ``kid``) fits.
            DependencyUnavailable: no usable key set (key manager down at a cold start or past ``max_stale``).
        """
        if not self.usable():
            self._refetch_unusable()
            if trace is not None:
                trace.append(Step("key", self.last_error or "key set expired", f"a usable key set from {self.name}'s "
                                  "JWKS (fetched within its refresh interval + jwks.max_stale)", False))
            raise DependencyUnavailable(f"jwks:{self.name}", self.last_error or "key set expired")
        source = "cached"
        key = select_key(self._keyset, kid, alg)
        if key is None and kid is not None:
            key, source = await self._await_unknown_kid(kid, alg)
        if trace is not None:
            age = self.seconds_since_fetch() or 0.0
            source = {"cached": f"the cached key set (fetched {age:.1f}s ago)", "cooldown": f"the cached key set "
                      f"(fetched {age:.1f}s ago; kid unknown, not refetched within jwks.kid_refetch_cooldown)"}.get(
                source, source)
            trace.append(Step("key", f"kid={kid!r} alg={alg}: " + ("found" if key is not None else "no key fits")
                              + f" in {source}", f"one key of {self.name}'s key set fits kid and alg",
                              key is not None))
        if key is None:
            raise Denial(
                Reason.INVALID_CREDENTIALS,
                "The access token was not signed by a key of its issuer",
                log_detail=f"key manager {self.name}: no key for kid={(kid or '')[:64]!r} alg={alg}",
            )
        return key

    def _refetch_unusable(self) -> None:
        """A check found no usable key set: start a fetch now (not awaited: this check answers 503) unless one is
        in flight or the ``kid_refetch_cooldown`` since the last forced fetch still runs. Without it, a key manager
        back after a long outage would wait for the background retry, whose delay doubles up to
        ``refresh_interval``."""
        if self._inflight is not None and not self._inflight.done():
            return
        if self._clock() - self._last_forced < self.settings.jwks.kid_refetch_cooldown:
            return
        self._last_forced = self._clock()
        self.refresh()

    async def _await_unknown_kid(self, kid: str, alg: str) -> tuple[VerificationKey | None, str]:
        """The key for a ``kid`` missing from the key set, from a key set fetched after this check arrived, if the
        rate limit and the check's wait allow it; else None (the caller answers 401). With it, where the answer
        came from (``cooldown`` when no refetch could be had within the wait), for ``authz explain``.

        Within ``jwks.forced_refetch_wait`` seconds from arrival, repeatedly:

        * a fetch in flight: join it; if it began before this check arrived, its answer may predate the key, so
          when the key is still missing, go on;
        * else, a fetch that began after arrival has answered: its key set decides;
        * else, the cooldown since the last forced fetch is over: force one (single-flight);
        * else, the cooldown ends early enough that the fetch can still answer within the wait (less
          :attr:`fetch_seconds`, the key manager's last answer time): wait for that moment, then join the fetch
          another waiting check forced, or force it;
        * else: give up at once.

        A fetch still running when the wait ends goes on in the background. Never raises: an unknown ``kid`` is a
        token problem (401), never a timeout (503).
        """
        cfg = self.settings.jwks
        arrived = self._clock()
        deadline = arrived + cfg.forced_refetch_wait
        refetched = "a refetch of the JWKS (the kid was not in the cached key set)"
        while True:
            inflight = self._inflight
            if inflight is not None and not inflight.done():
                started = self._fetch_started
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(inflight), max(0.0, deadline - self._clock()))
                if not inflight.done():
                    return None, "a refetch still under way when jwks.forced_refetch_wait ran out"
                key = select_key(self._keyset, kid, alg)
                if key is not None or started >= arrived:
                    return key, refetched
                continue
            if self._fetch_started >= arrived:
                return select_key(self._keyset, kid, alg), refetched
            forced = self._last_forced
            hold = forced + cfg.kid_refetch_cooldown - self._clock()
            if hold > 0:
                if hold + self.fetch_seconds >= deadline - self._clock():
                    return None, "cooldown"
                await asyncio.sleep(hold)
                if self._last_forced != forced or (self._inflight is not None and not self._inflight.done()):
                    continue  # another check forced the fetch, or a refresh began: join it or read its answer
            self._last_forced = self._clock()
            log.info("jwks %s: unknown kid, refetching", self.name)
            self.refresh()
