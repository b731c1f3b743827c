"""The values of :mod:`authz.http1`: a rendered response, the handler's interface, the bounds."""

from __future__ import annotations

from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

RawHeaders = list[tuple[bytes, bytes]]
"""Header fields as received: ``(name, value)`` bytes, in order, names in the client's case."""


class Answer:
    """One rendered HTTP/1.1 response, ready for the wire (build it once, write it many times).

    Args:
        status: the HTTP status code.
        headers: ``(name, value)`` pairs; values are sent as UTF-8. ``content-length`` is added, except to a
            ``204 No Content`` (RFC 9110 section 8.6 forbids it there).
        body: the body bytes (none for a 204).
    Raises:
        ValueError: a name or value holds CR, LF or NUL (it would split the response), a name is empty, or a
            204 has a body.
    """

    __slots__ = ("status", "head", "body")

    def __init__(self, status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        lines = [f"HTTP/1.1 {status} {_phrase(status)}\r\n".encode("ascii")]
        for name, value in headers:
            if not name or _UNSAFE.intersection(name) or _UNSAFE.intersection(value):
                raise ValueError(f"header {name[:64]!r} cannot be sent: empty name or CR/LF/NUL")
            lines.append(f"{name}: {value}\r\n".encode())
        if status == 204:
            if body:
                raise ValueError("a 204 No Content answer has no body")
        else:
            lines.append(b"content-length: %d\r\n" % len(body))
        self.status = status
        self.head = b"".join(lines)
        """Status line and header lines, without the ``date`` line and the blank line."""
        self.body = body


_UNSAFE = frozenset("\r\n\0")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class Handler(Protocol):
    """What the server asks for each request."""

    def __call__(self, method: str, target: str, headers: RawHeaders) -> Answer | Coroutine[Any, Any, Answer]:
        """The answer to one complete request: an :class:`Answer` now, or a coroutine that returns one.

        Args:
            method: the request method (``GET``...).
            target: the request target as sent (path and query), decoded as UTF-8 (invalid bytes replaced).
            headers: the header fields as received.
        """
        ...

    def reject(self, status: int, description: str) -> Answer:
        """The answer to a request the server refuses before the handler sees it (400, 408, 413, 431) or to
        a handler failure (503); ``description`` says why, for the client."""
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one request and connection.

    Attributes:
        max_target: bytes of the request target (path and query).
        max_headers: header fields per request.
        max_header_bytes: bytes of header names and values per request.
        max_body: bytes of request body (read and discarded).
        request_timeout: seconds from a request's first byte until it is complete.
        idle_timeout: seconds a keep-alive connection may stay idle.
        max_queued: pipelined requests queued behind the one being decided before reading pauses.
    """

    max_target: int = 16 * 1024
    max_headers: int = 256
    max_header_bytes: int = 96 * 1024
    max_body: int = 64 * 1024
    request_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_queued: int = 32
