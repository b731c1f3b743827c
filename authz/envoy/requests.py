"""The request limits and the :class:`authz.model.Request` builder shared by both front ends.

The gRPC adapter (:mod:`authz.envoy.grpc_service`) and the HTTP one (:mod:`authz.envoy.http_service`) read headers
differently, then hand them here: header names folded to lower case, repeated names comma-joined (as HTTP
merges them), the same size limits, and method and request ID cleaned for logs. Work is linear in the input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from authz.errors import Denial, Reason
from authz.model import Request

MAX_HEADERS = 256
"""Most header entries accepted in one request (Envoy's own default limit is 100)."""
MAX_HEADER_BYTES = 96 * 1024
"""Most bytes of header names and values in one request (Envoy's default limit is 60 KiB)."""
MAX_PATH_BYTES = 16 * 1024
"""Longest ``:path`` accepted."""


def printable(value: str, limit: int = 64) -> str:
    """``value`` cut to ``limit`` characters, keeping only visible ASCII (safe in a log line)."""
    value = value[:limit]
    if value.isascii() and value.isprintable() and " " not in value:
        return value  # the common case (a UUID), without a per-character loop
    return "".join(c for c in value if 0x20 < ord(c) < 0x7F)


def check_header_count(count: int) -> None:
    """Raises Denial ``INVALID_REQUEST`` (400) for more than :data:`MAX_HEADERS` header entries."""
    if count > MAX_HEADERS:
        raise Denial(Reason.INVALID_REQUEST, "The request has too many headers")


def fold_headers(entries: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header entries as one map: names lower-cased, the values of a repeated name comma-joined in order."""
    collected: dict[str, list[str]] = {}
    for name, value in entries:
        collected.setdefault(name.lower(), []).append(value)
    return {name: values[0] if len(values) == 1 else ",".join(values) for name, values in collected.items()}


def build_request(
    method: str, path: str, host: str, headers: dict[str, str], *,
    context_extensions: Mapping[str, str] | None = None, request_id: str = "",
) -> Request:
    """The :class:`Request` of already folded headers, after the size limits.

    Args:
        method: HTTP method (cleaned to visible ASCII, at most 32 characters).
        path: ``:path``, query string included.
        host: the ``:authority``.
        headers: folded headers (:func:`fold_headers`).
        context_extensions: the Envoy route's ``context_extensions`` (gRPC only).
        request_id: fallback request ID when there is no ``x-request-id`` header.
    Raises:
        Denial: ``INVALID_REQUEST`` (400) for more than :data:`MAX_HEADER_BYTES` of headers or a path longer
            than :data:`MAX_PATH_BYTES`.
    """
    if sum(map(len, headers.values())) + sum(map(len, headers)) > MAX_HEADER_BYTES:
        raise Denial(Reason.INVALID_REQUEST, "The request headers are too large")
    if len(path) > MAX_PATH_BYTES:
        raise Denial(Reason.INVALID_REQUEST, "The request path is too long")
    return Request(
        method=printable(method, 32),
        path=path,
        host=host,
        headers=headers,
        context_extensions=dict(context_extensions or {}),
        request_id=printable(headers.get("x-request-id", "")) or printable(request_id),
    )


def described_request(
    method: str, path: str, *, token: str | None = None, host: str = "", api_id: str = "",
    environment: str = "", headers: Sequence[tuple[str, str]] = (),
) -> Request:
    """The :class:`Request` that ``authz explain`` (CLI and admin API) describes, as the gRPC adapter would build it.

    Args:
        method: HTTP method.
        path: ``:path`` (query string allowed).
        token: the bearer token, sent as ``authorization: Bearer <token>``; None or "" sends no such header.
        host: the ``:authority``.
        api_id: ``context_extensions.api_id`` ("" for none).
        environment: ``context_extensions.environment`` ("" for none).
        headers: other header entries, in any case (an ``authorization`` entry replaces the token's).
    Returns:
        The :class:`Request` (request ID ``explain`` unless an ``x-request-id`` header is given).
    Raises:
        Denial: ``INVALID_REQUEST`` past the limits of the front ends.
    """
    extra = list(headers)
    entries = [("host", host)] if host else []
    if token and not any(name.lower() == "authorization" for name, _ in extra):
        entries.append(("authorization", f"Bearer {token}"))
    check_header_count(len(entries) + len(extra))
    folded = fold_headers([*entries, *extra])
    extensions = {k: v for k, v in (("api_id", api_id), ("environment", environment)) if v}
    return build_request(method.upper(), path, host, folded, context_extensions=extensions, request_id="explain")
