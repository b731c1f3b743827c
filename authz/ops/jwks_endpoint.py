"""A small HTTP server publishing authz's public JWK Set for upstreams that verify backend JWTs.

``GET /.well-known/jwks.json`` (and ``HEAD``) answers the RFC 7517 JWK Set of every ``backend_jwt.keys``
entry, ``content-type: application/jwk-set+json`` (RFC 7517 section 8.5), ``cache-control: public,
max-age=300``; a query string is ignored. Anything else is 404 (405 with ``allow: GET, HEAD`` for another
method on that path). Only public keys are ever served. It runs on the same lean HTTP/1.1 server as the HTTP
ext_authz listener (:mod:`authz.http1`), with its bounds and timeouts; requests are small, so the limits are
tighter.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from authz.http1 import Answer, Http1Server, Limits, RawHeaders

log = logging.getLogger("authz.jwks_endpoint")

JWKS_PATH = "/.well-known/jwks.json"
CACHE_SECONDS = 300
LIMITS = Limits(max_target=4096, max_headers=64, max_header_bytes=16 * 1024, max_body=0)
"""Bounds of a JWKS request: a GET with a few headers."""

_JSON = ("content-type", "application/json")


class _JwksHandler:
    """Answers every request from answers rendered once."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        body = json.dumps(jwks, separators=(",", ":")).encode()
        self._ok = Answer(200, [("content-type", "application/jwk-set+json"),
                                ("cache-control", f"public, max-age={CACHE_SECONDS}")], body)
        self._not_found = Answer(404, [_JSON], b'{"error":"not found"}')
        self._not_allowed = Answer(405, [_JSON, ("allow", "GET, HEAD")], b'{"error":"method not allowed"}')

    def __call__(self, method: str, target: str, headers: RawHeaders) -> Answer:
        if target.partition("?")[0] != JWKS_PATH:
            return self._not_found
        return self._ok if method in ("GET", "HEAD") else self._not_allowed

    def reject(self, status: int, description: str) -> Answer:
        return Answer(status, [_JSON], json.dumps({"error": description}).encode())


class JwksEndpoint:
    """Serve a JWK Set over HTTP/1.1 on ``listen``.

    Args:
        jwks: the public JWK Set, ``{"keys": [...]}`` (from :meth:`authz.decide.backend_jwt.BackendJwtSigner.jwks`).
        listen: ``host:port`` (port 0 picks a free port; see :attr:`port` after :meth:`start`).
    """

    def __init__(self, jwks: dict[str, Any], listen: str) -> None:
        self._server = Http1Server(_JwksHandler(jwks), listen, LIMITS, grace_period=1.0)
        self._listen = listen
        self.port = int(listen.rpartition(":")[2])

    async def start(self) -> int:
        """Bind and start serving.

        Returns:
            The bound port.
        Raises:
            OSError: the address cannot be bound.
        """
        self.port = await self._server.start()
        log.info("JWKS of the backend JWT keys at http://%s:%d%s", self._listen.rpartition(":")[0], self.port,
                 JWKS_PATH)
        return self.port

    def publish(self, jwks: dict[str, Any]) -> None:
        """Serve ``jwks`` from the next request on (the backend JWT keys of a reloaded config)."""
        self._server.handler = _JwksHandler(jwks)

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        await self._server.close()
