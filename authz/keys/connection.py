"""Connection data of a key manager: what a developer needs to get tokens from it (issuer, token endpoint,
JWKS URI, grants), never a secret.

Taken from the key manager's metadata (OIDC Discovery / RFC 8414, :mod:`authz.keys.discovery`) when it has
``discovery``, fetched with the same bounded fetcher and limits as its JWKS (``jwks.timeout``, TLS settings,
size limit, no redirects) and cached; the configured fields (``token_endpoint``, ``grant_types_supported``,
``jwks_uri``) win over the metadata's, field by field, and are the only source without ``discovery``.
This is off the hot path: checks never wait on it, and it never touches the JWKS caches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from authz.config import KeyManagerSettings
from authz.keys.discovery import DiscoveryError, ServerMetadata, discover_metadata
from authz.keys.fetch import http_client, redact_url, refresh_period


@dataclass(frozen=True, slots=True)
class ConnectionData:
    """How to reach a key manager to get tokens (RFC 8414 section 2 member names).

    Attributes:
        key_manager: the key manager's name.
        issuer: its configured issuer (the ``iss`` of its tokens).
        token_endpoint: the URL of its token endpoint (RFC 6749 section 3.2), or None when unknown: see
            ``problems``.
        jwks_uri: its JWK Set URL, or None (static ``certificates``, or discovery failed).
        grant_types_supported: the grant types it states (config first, else metadata); empty: not stated.
        scopes_supported: the scopes its metadata lists (often only the OIDC ones); empty: not stated.
        token_endpoint_auth_methods_supported: client authentication methods of the token endpoint
            (``client_secret_basic``, ``client_secret_post``...); empty: not stated.
        metadata_url: where the metadata was read, None without ``discovery``.
        source: ``discovery``, ``config``, ``discovery+config`` (both contributed) or ``none``.
        problems: why something is missing, for people (``discovery of ... failed: ...``, ``no token
            endpoint: ...``); empty when the token endpoint is known.
    """

    key_manager: str
    issuer: str
    token_endpoint: str | None
    jwks_uri: str | None
    grant_types_supported: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    metadata_url: str | None = None
    source: str = "none"
    problems: tuple[str, ...] = ()


def connection_data(settings: KeyManagerSettings, metadata: ServerMetadata | None,
                    discovery_error: str | None = None) -> ConnectionData:
    """Merge a key manager's configured connection fields with its metadata (configured fields win).

    Args:
        settings: the key manager's settings.
        metadata: its checked metadata document, None without ``discovery`` or when the fetch failed.
        discovery_error: why the metadata could not be read (shown in ``problems``).
    Returns:
        The :class:`ConnectionData`. URLs with user info are never shown (dropped, with a problem).
    """
    problems: list[str] = []
    if discovery_error:
        problems.append(f"discovery failed: {discovery_error}")
    used_metadata = used_config = False

    def pick(configured: str | None, member: str) -> str | None:
        nonlocal used_metadata, used_config
        if configured:
            used_config = True
            return configured
        if metadata is None or member not in metadata.document:
            return None
        try:
            url = metadata.endpoint(member)
        except DiscoveryError as exc:
            problems.append(str(exc))
            return None
        if urlsplit(url).username is not None:
            problems.append(f"metadata at {metadata.url} has a {member} with credentials ({redact_url(url)}): not shown")
            return None
        used_metadata = True
        return url

    token_endpoint = pick(settings.token_endpoint, "token_endpoint")
    jwks_uri = pick(settings.jwks_uri, "jwks_uri")
    grants: tuple[str, ...] = tuple(settings.grant_types_supported)
    if grants:
        used_config = True
    elif metadata is not None:
        grants = metadata.strings("grant_types_supported")
        used_metadata = used_metadata or bool(grants)
    if token_endpoint is None:
        if settings.discovery is None:
            problems.append(
                f"no token endpoint: key manager {settings.name} has neither discovery nor token_endpoint in the "
                "config; ask its administrator for the token endpoint (or set key_managers[].token_endpoint)"
            )
        elif metadata is not None:
            problems.append(f"no token endpoint: the metadata at {metadata.url} states none; set "
                            "key_managers[].token_endpoint")
        else:
            problems.append("no token endpoint: the metadata could not be read; set key_managers[].token_endpoint "
                            "to show one regardless")
    return ConnectionData(
        key_manager=settings.name,
        issuer=settings.issuer,
        token_endpoint=token_endpoint,
        jwks_uri=jwks_uri,
        grant_types_supported=grants,
        scopes_supported=metadata.strings("scopes_supported") if metadata is not None else (),
        token_endpoint_auth_methods_supported=(
            metadata.strings("token_endpoint_auth_methods_supported") if metadata is not None else ()
        ),
        metadata_url=metadata.url if metadata is not None else None,
        source="+".join(name for name, used in (("discovery", used_metadata), ("config", used_config)) if used)
        or "none",
        problems=tuple(problems),
    )


@dataclass(slots=True)
class _Entry:
    data: ConnectionData
    expires_at: float


class ConnectionDirectory:
    """Cached connection data of every configured key manager.

    A key manager with ``discovery`` has its metadata fetched on first use and again once it is stale: after
    the response's ``Cache-Control`` freshness bounded by ``jwks.min_refresh_interval`` and
    ``jwks.max_refresh_interval`` (else ``jwks.refresh_interval``), as for its JWKS; a failed fetch is retried
    after ``jwks.retry_interval``. Concurrent callers share one fetch (single-flight). Fetches use the key
    manager's TLS settings (:func:`authz.keys.fetch.http_client`) and ``jwks.timeout``.

    Args:
        key_managers: the configured key managers.
        clock: monotonic clock in seconds.

    Attributes:
        fetch_count: metadata fetches attempted, per key manager name.
    """

    def __init__(self, key_managers: list[KeyManagerSettings], clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = {km.name: km for km in key_managers}
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}
        self.fetch_count: dict[str, int] = dict.fromkeys(self._settings, 0)

    async def get(self, name: str) -> ConnectionData:
        """The connection data of key manager ``name``.

        Returns:
            From the cache while fresh, else after one bounded metadata fetch (``jwks.timeout`` seconds at
            most). Never raises for a fetch problem: it is in ``problems``.
        Raises:
            KeyError: no key manager of that name.
        """
        settings = self._settings[name]
        if settings.discovery is None:
            return connection_data(settings, None)
        entry = self._entries.get(name)
        if entry is not None and self._clock() < entry.expires_at:
            return entry.data
        task = self._inflight.get(name)
        if task is None or task.done():
            task = asyncio.ensure_future(self._fetch(settings))
            self._inflight[name] = task
        entry = await asyncio.shield(task)
        self._entries[name] = entry
        return entry.data

    async def _fetch(self, settings: KeyManagerSettings) -> _Entry:
        assert settings.discovery is not None
        cfg = settings.jwks
        self.fetch_count[settings.name] += 1
        try:
            async with http_client(settings) as client:
                metadata = await discover_metadata(client, settings.issuer, settings.discovery, cfg.timeout)
        except (DiscoveryError, OSError) as exc:  # OSError: the CA bundle cannot be read
            return _Entry(connection_data(settings, None, str(exc)), self._clock() + cfg.retry_interval)
        return _Entry(connection_data(settings, metadata), self._clock() + refresh_period(metadata.max_age, cfg))
