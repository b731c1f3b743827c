"""Bounded HTTP GETs of key-manager metadata (JWKS, discovery documents) with httpx.

Every fetch is bounded in time as a whole (not only per network operation: a server trickling bytes would
otherwise hold it forever) and in size, follows no redirects, and reads no proxy settings from the
environment. TLS verification is on unless a key manager sets ``verify_tls: false``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx

from authz.config import JwksSettings, KeyManagerSettings

MAX_DOCUMENT_BYTES = 1024 * 1024
"""A JWKS or discovery response larger than this is a failed fetch (they are a few KB)."""

_MAX_AGE = re.compile(r'^max-age\s*=\s*"?(\d{1,10})"?$')


class FetchError(Exception):
    """A fetch failed: HTTP status, size, timeout, transport or TLS error, or not JSON."""


# httpx logs every request's full URL at INFO (and httpcore its internals at DEBUG): a URL may carry
# credentials, so only authz's own, redacted, log lines name URLs.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


def redact_url(url: str) -> str:
    """``url`` for logs: user info, query and fragment replaced, so credentials in a URL are never logged.

    Args:
        url: any URL (possibly from a key manager's metadata).
    Returns:
        e.g. ``https://***@idp.example/keys?***`` for ``https://user:secret@idp.example/keys?sig=x``.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    userinfo = "***@" if parts.username or parts.password else ""
    return f"{parts.scheme}://{userinfo}{host}{port}{parts.path}{'?***' if parts.query else ''}{'#***' if parts.fragment else ''}"


def http_client(settings: KeyManagerSettings) -> httpx.AsyncClient:
    """The httpx client a key manager's fetches go through.

    Args:
        settings: ``verify_tls`` and ``ca_bundle`` (PEM file of CAs trusted instead of httpx's default bundle).
    Returns:
        A new :class:`httpx.AsyncClient` (close it with ``aclose``).
    Raises:
        OSError / ssl.SSLError: the CA bundle cannot be read or parsed.
    """
    verify: bool | ssl.SSLContext = settings.verify_tls
    if settings.verify_tls and settings.ca_bundle:
        verify = ssl.create_default_context(cafile=settings.ca_bundle)
    return httpx.AsyncClient(verify=verify, follow_redirects=False, trust_env=False)


async def fetch_json(client: httpx.AsyncClient, url: str, timeout: float) -> tuple[Any, httpx.Headers]:
    """GET ``url`` and parse its JSON body.

    Args:
        client: the key manager's client (:func:`http_client`).
        url: an ``http(s)`` URL.
        timeout: seconds for the whole fetch, body included.
    Returns:
        ``(document, response headers)``.
    Raises:
        FetchError: anything that went wrong, with a short reason.
    """
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("GET", url, timeout=timeout, headers={"accept": "application/json"}) as resp:
                if resp.status_code != 200:
                    raise FetchError(f"HTTP status {resp.status_code}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_DOCUMENT_BYTES:
                        raise FetchError(f"response larger than {MAX_DOCUMENT_BYTES} bytes")
                    chunks.append(chunk)
                headers = resp.headers
        return json.loads(b"".join(chunks)), headers
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(f"Timeout: no complete answer within {timeout:g}s") from None
    except Exception as exc:  # httpx transport/TLS errors, JSON errors (RecursionError on deep nesting)
        raise FetchError(f"{type(exc).__name__}: {exc}") from None


def freshness(headers: httpx.Headers) -> float | None:
    """Seconds the response stays fresh by ``Cache-Control`` (RFC 9111 section 4.2.1), minus its ``Age``.

    Returns:
        ``max-age`` minus ``Age`` (never below 0); 0 for ``no-cache`` or ``no-store``; None when the response
        states no freshness (no or malformed ``max-age``).
    """
    max_age: float | None = None
    for value in headers.get_list("cache-control", split_commas=True):
        directive = value.strip().lower()
        if directive in ("no-cache", "no-store"):
            return 0.0
        match = _MAX_AGE.match(directive)
        if match is not None:
            max_age = float(match.group(1))
    if max_age is None:
        return None
    age = headers.get("age", "").strip()
    current_age = float(age) if age.isdigit() and len(age) <= 10 else 0.0
    return max(0.0, max_age - current_age)


def refresh_period(fresh: float | None, settings: JwksSettings) -> float:
    """How long a fetched JWKS or metadata document is used before it is fetched again.

    Args:
        fresh: the response's freshness (:func:`freshness`), None when it states none.
        settings: the key manager's ``jwks`` settings.
    Returns:
        Seconds: ``fresh`` bounded by ``min_refresh_interval`` and ``max_refresh_interval``; ``refresh_interval``
        when ``fresh`` is None.
    """
    if fresh is None:
        return settings.refresh_interval
    return min(max(fresh, settings.min_refresh_interval), settings.max_refresh_interval)
