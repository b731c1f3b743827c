"""HTTP adapter: Envoy's HTTP ext_authz contract (``ExtAuthz.http_service``) over the decision pipeline.

Envoy's ``http_service`` mode sends each client request's method and path (no ``path_prefix`` is
configured) with the headers allowed by ``allowed_headers`` (``Host`` always) to this HTTP/1.1 server,
without a body. The answer (rendered by :mod:`authz.envoy.render`, as in gRPC mode):

- allow: ``200`` with the identity headers (Envoy copies those named in
  ``authorization_response.allowed_upstream_headers`` onto the upstream request, overwriting client copies),
  ``x-envoy-auth-headers-to-remove: authorization, ...`` (the HTTP-mode form of
  ``OkHttpResponse.headers_to_remove``) and one header per dynamic metadata entry, named as its key
  (``application_id``...; Envoy's ``dynamic_metadata_from_headers``), percent-encoded unless printable ASCII;
- deny: the denial's HTTP status, JSON body and ``content-type`` / ``www-authenticate`` / ``retry-after``
  headers (Envoy forwards those named in ``authorization_response.allowed_client_headers``),
  :func:`authz.envoy.render.deny_parts`;
- a 503 deny (an outage, the decision budget spent, any internal error): :data:`UNAVAILABLE_STATUS` (429) with
  the 503's JSON body and ``retry-after``, never ``200`` and never a 5xx: Envoy's HTTP ext_authz client takes any
  5xx as a failure of authz itself, which a fail-open Envoy (``failure_mode_allow``) lets through and a
  fail-closed one replaces with ``status_on_error`` and no body. The Envoy config of ``authz envoy-config`` maps
  it back to 503 for the client (``local_reply_config``); a request the transport refuses (malformed, oversized,
  too slow) gets the same JSON body with 400, 413, 431 or 408.

Per-route context: with ``server.http_route_headers`` (set only when the Envoy in front removes any
client-sent copy and sets them per route, as ``authz envoy-config --authz-mode http`` generates), the headers
:data:`API_ID_HEADER` and :data:`ENVIRONMENT_HEADER` become ``context_extensions.api_id`` and
``.environment``, as the gRPC mode's per-route ``context_extensions``. Without it they are ordinary headers
and the API is matched by host + path.

Health: a ``GET`` (or ``HEAD``) of :data:`HEALTH_PATH` carrying the header :data:`HEALTH_HEADER` is a health
probe (Envoy's HTTP health check of the ``authz_http`` cluster, as ``authz envoy-config`` generates it), not an
authorization request: :data:`HEALTHY_STATUS` (204) while the process serves (the JWKS prefetch done, not
draining: the state of ``grpc.health.v1``), else :data:`UNAVAILABLE_STATUS`. Never 200: Envoy's ext_authz filter allows on 200 only,
so even a probe forged by a client through an Envoy that forwarded its ``x-authz-health-check`` header (the
generated ``allowed_headers`` never do) is a deny, never an allow.

The server is :class:`authz.http1.Http1Server`: a repeated allowed request is answered from the pipeline's
cache-only path (:meth:`authz.decide.pipeline.Pipeline.decide_cached`) without a task or an await, and the
bytes of each memoized allow are rendered once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Coroutine
from time import perf_counter
from typing import Any

from authz.cache import BoundedCache
from authz.decide.pipeline import Pipeline
from authz.decide.record import DecisionRecorder
from authz.envoy import render
from authz.envoy.render import allow_parts, deny_parts
from authz.envoy.requests import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_PATH_BYTES,
    build_request,
    check_header_count,
    fold_headers,
)
from authz.errors import Denial, Reason, unavailable
from authz.http1 import Answer, Http1Server, Limits, RawHeaders
from authz.model import Allow, Request

log = logging.getLogger("authz.http")

HEADERS_TO_REMOVE = render.HEADERS_TO_REMOVE
"""Response header naming the headers Envoy strips from the upstream request (comma-separated)."""
API_ID_HEADER = "x-authz-api-id"
"""Request header by which Envoy names the route's API (``context_extensions.api_id`` in gRPC mode); read only
with ``server.http_route_headers``."""
ENVIRONMENT_HEADER = "x-authz-environment"
"""Request header by which Envoy marks a sandbox route (``context_extensions.environment``); read only with
``server.http_route_headers``."""

UNAVAILABLE_STATUS = 429
"""The status on the wire of every 503-class answer of the check listener (``Too Many Requests``, with the 503's
JSON body and ``retry-after``): a deny to Envoy's ext_authz filter, where a 5xx would be an authz failure (allowed
by a fail-open Envoy, its body dropped by a fail-closed one). The generated Envoy turns it back into 503 for the
client (``local_reply_config``: a local reply with this status and response flag ``UAEX``); behind another Envoy
the client sees 429 with ``retry-after`` (retry later) and the JSON body naming the outage."""

HEALTH_PATH = "/healthz"
"""Path of the health probe on the check listener (with :data:`HEALTH_HEADER`)."""
HEALTH_HEADER = "x-authz-health-check"
"""Request header that makes ``GET /healthz`` a health probe instead of an authorization request (any value).
Envoy's health checker adds it (``HttpHealthCheck.request_headers_to_add``); the ext_authz ``allowed_headers``
of ``authz envoy-config`` never forward a client's copy, so an API's own ``/healthz`` stays an ordinary path."""
HEALTHY_STATUS = 204
"""The probe's answer while serving (``No Content``): a success to Envoy's health checker
(``expected_statuses``), a deny to its ext_authz filter (which allows on 200 only). Not serving:
:data:`UNAVAILABLE_STATUS`, as every unavailable answer."""

LIMITS = Limits(max_target=MAX_PATH_BYTES, max_headers=MAX_HEADERS, max_header_bytes=MAX_HEADER_BYTES)
"""The transport bounds of the check listener: the request limits of :mod:`authz.envoy.requests`."""


_NAMES: dict[bytes, str] = {}
"""Header names as received -> lower-cased text: Envoy sends the same few names on every check."""
_MAX_NAMES = 1024


def _name(raw: bytes) -> str:
    """The lower-cased text of a header name, remembered while fewer than ``_MAX_NAMES`` are."""
    name = raw.decode("latin-1").lower()
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[raw] = name
    return name


def adapt_http(method: str, path: str, headers: RawHeaders, *, route_headers: bool = False) -> Request:
    """Turn Envoy's HTTP authorization request into a plain :class:`Request`.

    Args:
        method: the client request's method (Envoy reuses it for the authorization request).
        path: the client request's path, query string included (no ``path_prefix``).
        headers: the header fields as received (bytes, names in any case); ``host`` is the client's
            ``:authority``. Values are decoded as UTF-8, invalid bytes replaced.
        route_headers: read :data:`API_ID_HEADER` and :data:`ENVIRONMENT_HEADER` into ``context_extensions``
            (and drop them from the headers); only when Envoy strips client-sent copies.
    Returns:
        The :class:`Request`: header names lower-cased, repeated names comma-joined.
    Raises:
        Denial: ``INVALID_REQUEST`` (400) past the limits of :mod:`authz.envoy.requests` (the gRPC adapter's).
    """
    check_header_count(len(headers))
    names = _NAMES
    folded = {names.get(name) or _name(name): value.decode("utf-8", "replace") for name, value in headers}
    if len(folded) != len(headers):  # a repeated name: join its values in order
        folded = fold_headers((name.decode("latin-1"), value.decode("utf-8", "replace")) for name, value in headers)
    extensions = None
    if route_headers:
        api_id = folded.pop(API_ID_HEADER, "")
        environment = folded.pop(ENVIRONMENT_HEADER, "")
        extensions = {key: value for key, value in (("api_id", api_id), ("environment", environment)) if value}
    return build_request(method, path, folded.get("host", ""), folded, context_extensions=extensions)


def wire_status(status: int) -> int:
    """The status the check listener sends for a deny of HTTP ``status``: :data:`UNAVAILABLE_STATUS` for a 5xx,
    else ``status`` itself."""
    return UNAVAILABLE_STATUS if status >= 500 else status


_HEALTH_NAME = HEALTH_HEADER.encode()


def is_health_probe(method: str, target: str, headers: RawHeaders) -> bool:
    """Whether a request is the health probe: ``GET`` or ``HEAD`` of exactly :data:`HEALTH_PATH` (no query) with
    the :data:`HEALTH_HEADER` header (name in any case)."""
    return target == HEALTH_PATH and method in ("GET", "HEAD") and any(
        name.lower() == _HEALTH_NAME for name, _ in headers)


class HttpAuthorizationHandler:
    """Answers Envoy's HTTP authorization requests (a :class:`authz.http1.Handler`).

    Args:
        pipeline: the decision pipeline.
        realm: the ``realm`` of ``WWW-Authenticate`` challenges.
        cache_size: most rendered allow answers kept (``server.decision_cache_size``).
        recorder: counts and logs each decision (default: counting on, denials logged).
        route_headers: ``server.http_route_headers`` (see :func:`adapt_http`).

    Attributes:
        serving: what the health probe reports (:func:`is_health_probe`): False until the process sets it once
            it serves (as ``grpc.health.v1`` SERVING), False again while draining.
    """

    def __init__(self, pipeline: Pipeline, realm: str, cache_size: int = 10_000,
                 recorder: DecisionRecorder | None = None, *, route_headers: bool = False) -> None:
        self._pipeline = pipeline
        self._realm = realm
        self._route_headers = route_headers
        self.recorder = recorder or DecisionRecorder("http")
        # The pipeline memoizes allow decisions, so the same Allow object comes back for repeated requests
        # and is rendered once: id(allow) -> (allow, answer).
        self._rendered: BoundedCache[int, tuple[Allow, Answer]] = BoundedCache("rendered_http", cache_size)
        self._failure = self.deny(unavailable("authz failed to decide; retry later"))
        self.serving = False
        self._healthy = Answer(HEALTHY_STATUS, [("x-authz-health", "SERVING")])
        self._not_serving = self.deny(unavailable("authz is not serving (starting or draining); retry later"))

    def __call__(self, method: str, target: str, headers: RawHeaders) -> Answer | Coroutine[Any, Any, Answer]:
        """Decide one request: the answer at once when every phase answers from its cache, else a coroutine.

        Never raises: an internal error is the 503 deny.
        """
        if target == HEALTH_PATH and is_health_probe(method, target, headers):
            return self._healthy if self.serving else self._not_serving
        started = perf_counter()
        try:
            try:
                request = adapt_http(method, target, headers, route_headers=self._route_headers)
            except Denial as denial:
                self.recorder.denied(None, denial, started, "adapt")
                return self.deny(denial)
            check = self._pipeline.evaluate_cached(request)
            if check is None or check.allow is None:
                return self._decide(request, started)
            answer = self.allow(check.allow)
            self.recorder.allowed(check, started)
            return answer
        except Exception:
            return self._internal_error(started)

    async def _decide(self, request: Request, started: float) -> Answer:
        try:
            check = await self._pipeline.evaluate(request)
            if check.allow is not None:
                answer = self.allow(check.allow)
                self.recorder.allowed(check, started)
                return answer
            assert check.denial is not None
            answer = self.deny(check.denial)
            self.recorder.denied(check, check.denial, started)
            return answer
        except Exception:
            return self._internal_error(started)

    def _internal_error(self, started: float) -> Answer:
        log.exception("internal error while deciding an HTTP check; denying with 503")
        with contextlib.suppress(Exception):
            self.recorder.denied(None, unavailable("authz failed to decide; retry later"), started, "internal")
        return self._failure

    def allow(self, allow: Allow) -> Answer:
        """The rendered answer of an allow (:func:`authz.envoy.render.allow_parts`), built once per Allow."""
        hit = self._rendered.get(id(allow))
        if hit is not None and hit[0] is allow:
            return hit[1]
        status, headers = allow_parts(allow)
        answer = Answer(status, headers)
        self._rendered.put(id(allow), (allow, answer))
        return answer

    def deny(self, denial: Denial, status: int | None = None) -> Answer:
        """The rendered answer of a denial (:func:`authz.envoy.render.deny_parts`); a 5xx goes on the wire as
        :data:`UNAVAILABLE_STATUS` (:func:`wire_status`).

        Args:
            denial: the denial.
            status: an HTTP status replacing the reason's own (the transport's 408, 413, 431).
        """
        code, headers, body = deny_parts(denial, self._realm)
        return Answer(wire_status(status or code), headers, body.encode())

    def reject(self, status: int, description: str) -> Answer:
        """The answer to a request the transport refused (400, 408, 413, 431: ``INVALID_REQUEST``'s JSON body
        with that status) or to a failure (503: ``TEMPORARILY_UNAVAILABLE``, as :data:`UNAVAILABLE_STATUS`)."""
        if status >= 500:
            return self._failure
        return self.deny(Denial(Reason.INVALID_REQUEST, description), status)


def limits_for(max_token_bytes: int) -> Limits:
    """The transport bounds when a bearer token may be up to ``max_token_bytes`` long.

    The header block may hold :data:`MAX_HEADER_BYTES` plus one such token, so that a token of any size Envoy
    forwards reaches the pipeline and gets its 401 ("too large"); the other headers are held to
    :data:`MAX_HEADER_BYTES` by :func:`authz.envoy.requests.build_request`.

    Args:
        max_token_bytes: ``server.max_receive_message_bytes`` (the gRPC listener's message limit).
    """
    return dataclasses.replace(LIMITS, max_header_bytes=MAX_HEADER_BYTES + max_token_bytes)


class HttpAuthorizationServer:
    """The HTTP/1.1 listener of Envoy's HTTP ext_authz mode (:class:`authz.http1.Http1Server`).

    Args:
        pipeline: the decision pipeline.
        realm: the ``realm`` of challenges.
        listen: ``host:port`` (``server.http_listen``; port 0 picks a free one).
        grace_period: seconds in-flight checks get to finish on :meth:`close`.
        cache_size: most rendered allow answers kept (``server.decision_cache_size``).
        recorder: counts and logs each decision.
        route_headers: ``server.http_route_headers``: take the route's API and environment from
            :data:`API_ID_HEADER` and :data:`ENVIRONMENT_HEADER`.
        limits: the transport bounds (default :data:`LIMITS`); :func:`limits_for` gives the ones of a config.

    Attributes:
        port: the bound port, after :meth:`start`.
        serving: what the health probe reports (:attr:`HttpAuthorizationHandler.serving`); False until set.
    """

    def __init__(self, pipeline: Pipeline, realm: str, listen: str, grace_period: float = 5.0,
                 cache_size: int = 10_000, recorder: DecisionRecorder | None = None, *, route_headers: bool = False,
                 limits: Limits = LIMITS) -> None:
        self.handler = HttpAuthorizationHandler(pipeline, realm, cache_size, recorder, route_headers=route_headers)
        self.recorder = self.handler.recorder
        self._server = Http1Server(self.handler, listen, limits, grace_period)
        self.port: int | None = None

    async def start(self) -> int:
        """Bind and start serving.

        Returns:
            The bound port.
        Raises:
            OSError: the address cannot be bound.
        """
        self.port = await self._server.start()
        return self.port

    def reconfigure(self, pipeline: Pipeline, realm: str, cache_size: int, *, route_headers: bool,
                    grace_period: float | None = None) -> None:
        """Answer the next requests with a new handler (a config reload): same recorder and health state, new
        pipeline, realm, rendered-answer cache and ``route_headers``. Checks in flight finish with the old one.

        Args:
            pipeline: the decision pipeline of the new config.
            realm: ``realm``.
            cache_size: ``server.decision_cache_size``.
            route_headers: ``server.http_route_headers``.
            grace_period: ``server.grace_period``, what :meth:`close` gives in-flight checks (None: unchanged).
        """
        handler = HttpAuthorizationHandler(pipeline, realm, cache_size, self.recorder, route_headers=route_headers)
        handler.serving = self.handler.serving
        self.handler = self._server.handler = handler
        if grace_period is not None:
            self._server.grace_period = grace_period

    @property
    def serving(self) -> bool:
        """What the health probe reports: True from when the process serves until it drains."""
        return self.handler.serving

    @serving.setter
    def serving(self, value: bool) -> None:
        self.handler.serving = value

    async def close(self) -> None:
        """Stop accepting, let in-flight checks finish (up to the grace period), close connections."""
        await self._server.close()
