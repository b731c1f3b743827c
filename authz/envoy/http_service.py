"""HTTP adapter: Envoy's HTTP ext_authz contract (``ExtAuthz.http_service``) over the decision pipeline.

Envoy's ``http_service`` mode sends each client request's method and path (no ``path_prefix`` is
configured) with the headers allowed by ``authorization_request.allowed_headers`` (``Host`` and
``authorization`` always) to this HTTP/1.1 server, without a body. The answer:

- allow: ``200`` with the identity headers (Envoy copies those named in
  ``authorization_response.allowed_upstream_headers`` onto the upstream request, overwriting client copies)
  and ``x-envoy-auth-headers-to-remove: authorization, ...`` (the HTTP-mode form of
  ``OkHttpResponse.headers_to_remove``);
- deny: the denial's HTTP status, JSON body and ``content-type`` / ``www-authenticate`` / ``retry-after``
  headers (Envoy forwards those named in ``authorization_response.allowed_client_headers``), rendered by
  :func:`authz.envoy.render.deny_parts` exactly as in gRPC mode;
- any internal error: ``503`` with the JSON body, never ``200``.

HTTP mode carries no ``context_extensions``: the API is matched by host + path, and the sandbox
environment (``context_extensions.environment``) is not available. Dynamic metadata is not sent.
"""

from __future__ import annotations

import contextlib
import logging
from time import perf_counter

from aiohttp import web

from authz.cache import BoundedCache
from authz.decide.pipeline import Pipeline
from authz.decide.record import DecisionRecorder
from authz.envoy.render import deny_parts
from authz.envoy.requests import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_PATH_BYTES,
    build_request,
    check_header_count,
    fold_headers,
)
from authz.errors import Denial, unavailable
from authz.model import Allow, Request
from authz.ops.http_logging import quiet_client_errors

log = logging.getLogger("authz.http")

HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"
"""Response header by which an HTTP authorization service names the headers Envoy strips from the upstream
request (comma-separated; Envoy ``ext_authz`` HTTP client)."""


def adapt_http(method: str, path: str, headers: list[tuple[str, str]]) -> Request:
    """Turn Envoy's HTTP authorization request into a plain :class:`Request`.

    Args:
        method: the client request's method (Envoy reuses it for the authorization request).
        path: the client request's path, query string included (no ``path_prefix``).
        headers: the header entries as received, names in any case; ``host`` is the client's ``:authority``.
    Returns:
        The :class:`Request`: header names lower-cased, repeated names comma-joined, no context extensions.
    Raises:
        Denial: ``INVALID_REQUEST`` (400) past the limits of :mod:`authz.envoy.requests` (the gRPC adapter's).
    """
    check_header_count(len(headers))
    folded = fold_headers(headers)
    return build_request(method, path, folded.get("host", ""), folded)


class HttpAuthorizationHandler:
    """The aiohttp low-level handler answering Envoy's HTTP authorization requests.

    Args:
        pipeline: the decision pipeline.
        realm: the ``realm`` of ``WWW-Authenticate`` challenges.
        cache_size: most rendered allow answers kept (``server.decision_cache_size``).
        recorder: counts and logs each decision (default: counting on, denials logged).
    """

    def __init__(self, pipeline: Pipeline, realm: str, cache_size: int = 10_000,
                 recorder: DecisionRecorder | None = None) -> None:
        self._pipeline = pipeline
        self._realm = realm
        self.recorder = recorder or DecisionRecorder("http")
        # The pipeline memoizes allow decisions: each Allow object's response headers are built once.
        self._rendered: BoundedCache[int, tuple[Allow, dict[str, str]]] = BoundedCache("rendered_http", cache_size)

    def _allow_headers(self, allow: Allow) -> dict[str, str]:
        hit = self._rendered.get(id(allow))
        if hit is not None and hit[0] is allow:
            return hit[1]
        headers = dict(allow.headers)
        if allow.headers_to_remove:
            headers[HEADERS_TO_REMOVE] = ", ".join(allow.headers_to_remove)
        self._rendered.put(id(allow), (allow, headers))
        return headers

    def _deny(self, denial: Denial) -> web.Response:
        status, headers, body = deny_parts(denial, self._realm)
        return web.Response(status=status, headers=dict(headers), body=body.encode())

    async def __call__(self, request: web.BaseRequest) -> web.Response:
        """Decide one request; never raises (an internal error is a 503 deny)."""
        started = perf_counter()
        recorder = self.recorder
        try:
            try:
                headers = [(k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in request.raw_headers]
                adapted = adapt_http(request.method, request.raw_path, headers)
            except Denial as denial:
                recorder.denied(None, denial, started, "adapt")
                return self._deny(denial)
            check = await self._pipeline.evaluate(adapted)
            if check.allow is not None:
                response = web.Response(status=200, headers=self._allow_headers(check.allow))
                recorder.allowed(check, started)
                return response
            assert check.denial is not None
            response = self._deny(check.denial)
            recorder.denied(check, check.denial, started)
            return response
        except Exception:
            log.exception("internal error while deciding an HTTP check; denying with 503")
            denial = unavailable("authz failed to decide; retry later")
            with contextlib.suppress(Exception):
                recorder.denied(None, denial, started, "internal")
            return self._deny(denial)


class HttpAuthorizationServer:
    """An HTTP/1.1 listener serving :class:`HttpAuthorizationHandler` (aiohttp low-level server, no access log).

    Args:
        pipeline: the decision pipeline.
        realm: the ``realm`` of challenges.
        listen: ``host:port`` (``server.http_listen``; port 0 picks a free one).
        grace_period: seconds in-flight checks get to finish on :meth:`close`.
        cache_size: most rendered allow answers kept (``server.decision_cache_size``).
        recorder: counts and logs each decision.
    """

    def __init__(self, pipeline: Pipeline, realm: str, listen: str, grace_period: float = 5.0,
                 cache_size: int = 10_000, recorder: DecisionRecorder | None = None) -> None:
        self._handler = HttpAuthorizationHandler(pipeline, realm, cache_size, recorder)
        self.recorder = self._handler.recorder
        self._host, _, port = listen.rpartition(":")
        self._port = int(port)
        # The parser's limits are the adapter's (aiohttp's defaults, 8190-byte fields and 128 headers, would
        # reject a large token before the pipeline sees it); past them aiohttp answers a plain 400.
        quiet_client_errors()
        server = web.Server(self._handler, access_log=None, max_headers=MAX_HEADERS, max_field_size=MAX_HEADER_BYTES,
                            max_line_size=MAX_PATH_BYTES + 1024)
        self._runner = web.ServerRunner(server, shutdown_timeout=grace_period)
        self.port: int | None = None

    async def start(self) -> int:
        """Bind and start serving.

        Returns:
            The bound port.
        Raises:
            OSError: the address cannot be bound.
        """
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host.strip("[]"), self._port, reuse_port=False)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound sockets only there
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop accepting, let in-flight checks finish (up to the grace period), close connections."""
        await self._runner.cleanup()
