"""A small HTTP server (aiohttp) publishing authz's public JWK Set for upstreams that verify backend JWTs.

``GET /.well-known/jwks.json`` (and ``HEAD``) answers the RFC 7517 JWK Set of every ``backend_jwt.keys``
entry, ``content-type: application/jwk-set+json`` (RFC 7517 section 8.5), ``cache-control: public,
max-age=300``. Anything else is 404 (405 for another method on that path). Only public keys are ever served.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from authz.ops.http_site import start_site

log = logging.getLogger("authz.jwks_endpoint")

JWKS_PATH = "/.well-known/jwks.json"
CACHE_SECONDS = 300


class JwksEndpoint:
    """Serve a JWK Set over HTTP/1.1 on ``listen``.

    Args:
        jwks: the public JWK Set, ``{"keys": [...]}`` (from :meth:`authz.decide.backend_jwt.BackendJwtSigner.jwks`).
        listen: ``host:port`` (port 0 picks a free port; see :attr:`port` after :meth:`start`).
    """

    def __init__(self, jwks: dict[str, Any], listen: str) -> None:
        self._body = json.dumps(jwks, separators=(",", ":")).encode()
        host, _, port = listen.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port)
        self._runner: web.AppRunner | None = None
        self.port = self._port

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._body,
            headers={"content-type": "application/jwk-set+json", "cache-control": f"public, max-age={CACHE_SECONDS}"},
        )

    async def start(self) -> int:
        """Bind and start serving.

        Returns:
            The bound port.
        Raises:
            OSError: the address cannot be bound.
        """
        app = web.Application()
        app.router.add_get(JWKS_PATH, self._jwks)
        self._runner, self.port = await start_site(app, self._host, self._port)
        log.info("JWKS of the backend JWT keys at http://%s:%d%s", self._host, self.port, JWKS_PATH)
        return self.port

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
