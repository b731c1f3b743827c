"""Authorization server metadata: a key manager's metadata document (its ``jwks_uri``, ``token_endpoint``,
``grant_types_supported``...) from its issuer.

``discovery: oidc`` reads ``{issuer}/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0
section 4); ``discovery: oauth`` reads the RFC 8414 section 3.1 URL, the well-known path inserted between the
host and the issuer's path (``https://as.example/tenant`` ->
``https://as.example/.well-known/oauth-authorization-server/tenant``).

The document's ``issuer`` must equal the configured issuer (one trailing ``/`` ignored, nothing else:
OIDC Discovery section 4.3, RFC 8414 section 3.3); otherwise the key manager is unusable, as the metadata
may belong to another issuer (a mix-up or a misconfiguration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from authz.config import normalize_issuer
from authz.keys.fetch import FetchError, fetch_json, freshness, redact_url


class DiscoveryError(Exception):
    """The metadata could not be used: fetch failure, not a JSON object, or a bad ``jwks_uri``."""


class IssuerMismatch(DiscoveryError):
    """The metadata names another issuer: the key manager must not be used.

    Attributes:
        url: the metadata URL.
        found: the document's ``issuer`` (or its repr when not a string).
        expected: the configured issuer.
    """

    def __init__(self, url: str, found: str, expected: str) -> None:
        super().__init__(f"metadata at {url} has issuer {found[:200]!r}, expected {expected!r}")
        self.url = url
        self.found = found
        self.expected = expected


def metadata_url(issuer: str, style: Literal["oidc", "oauth"]) -> str:
    """The well-known metadata URL of ``issuer``.

    Args:
        issuer: the configured issuer (an ``http(s)`` URL; query and fragment are dropped).
        style: ``oidc`` (appended) or ``oauth`` (RFC 8414, inserted after the host).
    Returns:
        The URL.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    if style == "oidc":
        return urlunsplit((parts.scheme, parts.netloc, f"{path}/.well-known/openid-configuration", "", ""))
    return urlunsplit((parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", ""))


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """A checked metadata document (OIDC Discovery 1.0 section 3, RFC 8414 section 2).

    Attributes:
        url: where it was fetched (:func:`metadata_url`).
        document: the JSON object as served; its ``issuer`` is the configured one. Metadata is public:
            it carries no secret.
        max_age: seconds it stays fresh by its ``Cache-Control`` (:func:`authz.keys.fetch.freshness`), None when
            the response states none.
    """

    url: str
    document: Mapping[str, Any]
    max_age: float | None = None

    def endpoint(self, name: str) -> str:
        """The URL member ``name`` (``jwks_uri``, ``token_endpoint``...), checked.

        Returns:
            The URL: ``https``, or ``http`` only when the metadata itself was fetched over ``http``, with a host.
        Raises:
            DiscoveryError: the member is missing, not a string, or not such a URL.
        """
        value = self.document.get(name)
        if not isinstance(value, str):
            raise DiscoveryError(f"metadata at {self.url} has no {name}")
        parts = urlsplit(value)
        allowed = ("https", "http") if urlsplit(self.url).scheme == "http" else ("https",)
        if parts.scheme not in allowed or not parts.netloc:
            raise DiscoveryError(
                f"metadata at {self.url} has an unusable {name} {redact_url(value[:200])!r} (https required)"
            )
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        """The list-of-strings member ``name`` (``grant_types_supported``, ``scopes_supported``...).

        Returns:
            Its string items in the document's order (other items dropped); empty when the member is absent
            or not a list (no default of the RFCs is applied: absent means "not stated").
        """
        value = self.document.get(name)
        if not isinstance(value, list):
            return ()
        return tuple(item for item in value if isinstance(item, str))


async def discover_metadata(
    client: httpx.AsyncClient, issuer: str, style: Literal["oidc", "oauth"], timeout: float
) -> ServerMetadata:
    """Fetch the issuer's metadata document and check that it names the issuer.

    Args:
        client: the key manager's httpx client (:func:`authz.keys.fetch.http_client`).
        issuer: the configured issuer.
        style: ``oidc`` or ``oauth`` (see :func:`metadata_url`).
        timeout: seconds for the whole fetch (:func:`authz.keys.fetch.fetch_json`: bounded in size too).
    Returns:
        The :class:`ServerMetadata`.
    Raises:
        IssuerMismatch: the document's ``issuer`` is not the configured one.
        DiscoveryError: fetch failure or a document that is not a JSON object.
    """
    url = metadata_url(issuer, style)
    try:
        document, headers = await fetch_json(client, url, timeout)
    except FetchError as exc:
        raise DiscoveryError(f"fetch of {url} failed: {exc}") from None
    if not isinstance(document, dict):
        raise DiscoveryError(f"metadata at {url} is not a JSON object")
    found = document.get("issuer")
    if not isinstance(found, str) or normalize_issuer(found) != normalize_issuer(issuer):
        raise IssuerMismatch(url, found if isinstance(found, str) else repr(found), issuer)
    return ServerMetadata(url, document, freshness(headers))


async def discover_jwks_uri(
    client: httpx.AsyncClient, issuer: str, style: Literal["oidc", "oauth"], timeout: float
) -> str:
    """Fetch the issuer's metadata and return its ``jwks_uri``.

    Args:
        client: the key manager's httpx client.
        issuer: the configured issuer.
        style: ``oidc`` or ``oauth`` (see :func:`metadata_url`).
        timeout: seconds for the whole fetch.
    Returns:
        The ``jwks_uri``: an ``https`` URL, or ``http`` only when the metadata itself was fetched over ``http``.
    Raises:
        IssuerMismatch: the document's ``issuer`` is not the configured one.
        DiscoveryError: fetch failure, a document that is not an object, a missing or invalid ``jwks_uri``.
    """
    metadata = await discover_metadata(client, issuer, style, timeout)
    return metadata.endpoint("jwks_uri")
