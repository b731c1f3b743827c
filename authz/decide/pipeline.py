"""The decision pipeline: the one place that knows the order of the phases.

    route -> public -> credentials -> identity -> revocation -> resource -> registry -> policy

Each phase is a step over one :class:`Check` (the state of one decision) with two forms: ``run`` (the full
phase: may await the key managers or the registry, may raise a :class:`Denial`) and ``cached`` (the answer
from the phase's cache, or nothing). :meth:`Pipeline.decide` first walks the list with ``cached``: when every
phase answers from its cache, the decision is made without awaiting (the warm path); at the first miss it walks
the list again with ``run``. One ordered list drives both, so the two paths cannot diverge; ``authz explain``
walks the same list phase by phase (:mod:`authz.decide.explain`), with a trace on the :class:`Check` that the
phases fill with each rule they apply (only on the full path, and only when a trace is asked for).

:meth:`Pipeline.evaluate` returns the :class:`Check` itself, naming the phase that decided, so that the front ends
can count and log the decision (:mod:`authz.decide.record`); the pipeline logs no decision itself.

The route is resolved first because it is pure and cheap, but a route denial is only reported (phase
``resource``) after the caller has authenticated, so an anonymous client cannot probe which APIs exist (a
malformed path is a 400 at once). A public resource (``auth: none``) called without an ``authorization`` header
is allowed by phase ``public`` (logged, no identity forwarded); a credential sent to one is still validated
(invalid: 401) but no registry or scope check follows. Only an explicit positive result of every phase yields
an allow: an exception, a dependency outage or the budget running out (``server.decision_timeout``) is a deny
(503).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

from authz.cache import BoundedCache
from authz.config import HeadersSettings
from authz.decide.backend_jwt import BackendJwtSigner
from authz.decide.credentials import extract_bearer
from authz.decide.forward import build_allow, build_public_allow
from authz.decide.identity import TokenValidator
from authz.decide.policy import authorize
from authz.decide.revocation import check_not_revoked
from authz.decide.routes import Route, RouteTable
from authz.errors import Denial, DependencyUnavailable, Reason, unavailable
from authz.model import Allow, Identity, Lookup, Request, Step
from authz.registry.cache import RegistryCache

log = logging.getLogger("authz.pipeline")


def token_fingerprint(token: str) -> str:
    """First 12 hex digits of the token's SHA-256: correlates log lines without logging the token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


class Check:
    """The state of one decision, filled in phase by phase.

    Attributes:
        request: the adapted request.
        route: the matched API and resource (phase ``route``), or None.
        route_denial: why no route matched, reported only once the caller is authenticated, or None.
        token: the bearer token (phase ``credentials``), or "".
        identity: the validated token (phase ``identity``), or None.
        lookup: the registry's answer for (key manager, client ID, API) (phase ``registry``), or None.
        allow: the decision once a phase allowed, or None.
        denial: the denial once a phase denied (or the 503 of an outage or a timeout), or None.
        phase: the name of the phase that decided (``""`` before a decision).
        trace: the rules the phases applied, each a :class:`authz.model.Step` (``authz explain``), or None: the
            phases record nothing then.
    """

    __slots__ = ("request", "route", "route_denial", "token", "identity", "lookup", "allow", "denial", "phase",
                 "trace")

    def __init__(self, request: Request, trace: list[Step] | None = None) -> None:
        self.request = request
        self.route: Route | None = None
        self.route_denial: Denial | None = None
        self.token = ""
        self.identity: Identity | None = None
        self.lookup: Lookup | None = None
        self.allow: Allow | None = None
        self.denial: Denial | None = None
        self.phase = ""
        self.trace = trace


class Phase(Protocol):
    """One step of the pipeline. ``name`` is what logs and ``authz explain`` call it."""

    name: str

    def cached(self, check: Check) -> bool:
        """Fill ``check`` from this phase's cache without awaiting; False when the cache cannot answer
        (the full path then runs every phase)."""
        ...

    async def run(self, check: Check) -> None:
        """Fill ``check``, or set ``check.allow`` to end the pipeline.

        Raises:
            Denial: the request is denied by this phase.
            DependencyUnavailable: a dependency could not answer (503).
        """
        ...


class _Pure(ABC):
    """A phase without I/O: its cached form is the phase itself, and a denial is a cache miss (the full
    path raises it again)."""

    name = ""

    @abstractmethod
    def apply(self, check: Check) -> None:
        """Fill ``check`` or set ``check.allow``; raises :class:`Denial`."""

    def cached(self, check: Check) -> bool:
        try:
            self.apply(check)
        except Denial:
            return False
        return True

    async def run(self, check: Check) -> None:
        self.apply(check)


class RoutePhase:
    """``route``: the API and resource (:class:`authz.decide.routes.RouteTable`)."""

    name = "route"

    def __init__(self, routes: RouteTable) -> None:
        self.routes = routes

    def cached(self, check: Check) -> bool:
        check.route = self.routes.cached(check.request)
        return check.route is not None

    async def run(self, check: Check) -> None:
        try:
            check.route = self.routes.resolve(check.request)
        except Denial as denial:
            if denial.reason is Reason.INVALID_REQUEST:
                raise
            check.route_denial = denial


class PublicPhase(_Pure):
    """``public``: a public resource (``auth: none``) called without credentials is allowed here."""

    name = "public"

    def __init__(self, headers: HeadersSettings, backend_jwt: BackendJwtSigner | None) -> None:
        self.headers = headers
        self.backend_jwt = backend_jwt

    def apply(self, check: Check) -> None:
        route = check.route
        if route is not None and route.resource.auth == "none" and "authorization" not in check.request.headers:
            check.allow = build_public_allow(route, self.headers, self.backend_jwt)


class CredentialsPhase(_Pure):
    """``credentials``: the bearer token (:func:`authz.decide.credentials.extract_bearer`)."""

    name = "credentials"

    def apply(self, check: Check) -> None:
        check.token = extract_bearer(check.request.headers)


class IdentityPhase:
    """``identity``: the validated token (:class:`authz.decide.identity.TokenValidator`)."""

    name = "identity"

    def __init__(self, tokens: TokenValidator) -> None:
        self.tokens = tokens

    def cached(self, check: Check) -> bool:
        check.identity = self.tokens.cached(check.token)
        return check.identity is not None

    async def run(self, check: Check) -> None:
        check.identity = await self.tokens.validate(check.token, check.trace)


class RevocationPhase:
    """``revocation``: a revoked ``jti`` is refused (:mod:`authz.decide.revocation`)."""

    name = "revocation"

    def __init__(self, registry: RegistryCache) -> None:
        self.registry = registry

    def cached(self, check: Check) -> bool:
        identity = check.identity
        assert identity is not None
        return identity.token_id is None or self.registry.cached_revoked(
            identity.key_manager, identity.token_id) is False

    async def run(self, check: Check) -> None:
        assert check.identity is not None
        await check_not_revoked(check.identity, self.registry)


class ResourcePhase(_Pure):
    """``resource``: the route's own verdict, once the caller is authenticated: no route is a 403; a public
    resource called with a valid credential is allowed without registry or scope check."""

    name = "resource"

    def __init__(self, headers: HeadersSettings, backend_jwt: BackendJwtSigner | None) -> None:
        self.headers = headers
        self.backend_jwt = backend_jwt

    def apply(self, check: Check) -> None:
        if check.route_denial is not None:
            raise check.route_denial
        assert check.route is not None
        if check.route.resource.auth == "none":
            check.allow = build_public_allow(check.route, self.headers, self.backend_jwt)


class RegistryPhase:
    """``registry``: the client ID's application and its subscription to the API
    (:class:`authz.registry.cache.RegistryCache`)."""

    name = "registry"

    def __init__(self, registry: RegistryCache) -> None:
        self.registry = registry

    def cached(self, check: Check) -> bool:
        identity, route = check.identity, check.route
        assert identity is not None and route is not None
        check.lookup = self.registry.cached_lookup(identity.key_manager, identity.client_id, route.api.id)
        return check.lookup is not None

    async def run(self, check: Check) -> None:
        identity, route = check.identity, check.route
        assert identity is not None and route is not None
        check.lookup = await self.registry.lookup(identity.key_manager, identity.client_id, route.api.id)


class PolicyPhase:
    """``policy``: registration, key type, subscription state and scopes (:func:`authz.decide.policy.authorize`),
    then what the upstream gets (:func:`authz.decide.forward.build_allow`), memoized.

    The token validator and the registry cache hand out the same :class:`Identity` and :class:`Lookup` objects
    for as long as their entries are valid (a registry write, a key rotation or an expiry replaces them), so an
    allow keyed on those very objects (and the resource and the route's environment) is exactly as fresh as its
    inputs (:func:`authz.cache.identity_key`). Backend JWTs expire on their own schedule: APIs that forward one
    are never memoized. Denials are never memoized.

    Args:
        headers: the ``headers`` section.
        backend_jwt: the backend JWT signer, or None.
        cache_size: most allow decisions memoized (``server.decision_cache_size``).
    """

    name = "policy"

    def __init__(self, headers: HeadersSettings, backend_jwt: BackendJwtSigner | None, cache_size: int) -> None:
        self.headers = headers
        self.backend_jwt = backend_jwt
        # identity_key(identity, lookup, resource) + environment -> (identity, lookup, resource, allow)
        self.memo: BoundedCache[tuple[object, ...], tuple[object, object, object, Allow]] = BoundedCache(
            "decisions", cache_size)

    def _key(self, check: Check) -> tuple[object, ...]:
        assert check.route is not None
        # identity_key(identity, lookup, resource) + the route's environment, spelled out: this is the warm path.
        return (id(check.identity), id(check.lookup), id(check.route.resource),
                check.request.context_extensions.get("environment"))

    def cached(self, check: Check) -> bool:
        hit = self.memo.get(self._key(check))
        if hit is None or hit[0] is not check.identity or hit[1] is not check.lookup:
            return False
        assert check.route is not None
        if hit[2] is not check.route.resource:
            return False
        check.allow = hit[3]
        return True

    async def run(self, check: Check) -> None:
        if self.cached(check):
            return
        identity, lookup, route = check.identity, check.lookup, check.route
        assert identity is not None and lookup is not None and route is not None
        application, subscription = authorize(identity, route, lookup, check.request.context_extensions.get(
            "environment"), check.trace)
        assert lookup.binding is not None
        allow = build_allow(identity, application, lookup.binding, subscription, route, self.headers,
                            access_token=check.token, backend_jwt=self.backend_jwt)
        if route.api.backend_jwt is None:
            self.memo.put(self._key(check), (identity, lookup, route.resource, allow))
        check.allow = allow


class Pipeline:
    """Decides one request by running its phases in order.

    Args:
        routes: the route table.
        tokens: the token validator.
        registry: the registry lookups (through their cache).
        headers: the ``headers`` section.
        budget: seconds one decision may take (``server.decision_timeout``); past it, 503.
        backend_jwt: the backend JWT signer (``backend_jwt`` section), or None when not configured.
        decision_cache_size: most allow decisions memoized (``server.decision_cache_size``).

    Attributes:
        phases: the phases, in order (``authz explain`` walks them one by one).
    """

    def __init__(
        self, routes: RouteTable, tokens: TokenValidator, registry: RegistryCache, headers: HeadersSettings,
        *, budget: float = 0.4, backend_jwt: BackendJwtSigner | None = None, decision_cache_size: int = 10_000,
    ) -> None:
        self.budget = budget
        self.phases: Sequence[Phase] = (
            RoutePhase(routes),
            PublicPhase(headers, backend_jwt),
            CredentialsPhase(),
            IdentityPhase(tokens),
            RevocationPhase(registry),
            ResourcePhase(headers, backend_jwt),
            RegistryPhase(registry),
            PolicyPhase(headers, backend_jwt, decision_cache_size),
        )

    async def decide(self, request: Request) -> Allow | Denial:
        """Run every phase on ``request``: from the caches when they all answer, else in full.

        Args:
            request: the adapted request.
        Returns:
            :class:`Allow`, or the :class:`Denial` to render. Never raises for bad input or outages.
        """
        check = await self.evaluate(request)
        return check.allow or check.denial  # type: ignore[return-value]

    async def evaluate(self, request: Request) -> Check:
        """:meth:`decide`, returning the whole :class:`Check`: exactly one of ``allow`` and ``denial`` is set, and
        ``phase`` names the phase that decided (for an outage or a timeout, the phase that was running).

        Never raises for bad input or outages (any of them is a ``denial``).
        """
        fast = self.evaluate_cached(request)
        if fast is not None:
            return fast
        check = Check(request)
        phase: Phase | None = None
        try:
            async with asyncio.timeout(self.budget):
                for phase in self.phases:
                    await phase.run(check)
                    if check.allow is not None:
                        check.phase = phase.name
                        return check
        except Denial as denial:
            check.denial = denial
        except DependencyUnavailable as exc:
            log.warning("request %s: dependency unavailable: %s", request.request_id, exc)
            check.denial = unavailable("A service authz depends on is unavailable; retry later")
            check.denial.log_detail = str(exc)
        except TimeoutError:
            log.warning("request %s: decision exceeded its %.3fs budget", request.request_id, self.budget)
            check.denial = unavailable("The authorization decision took too long; retry later")
            check.denial.log_detail = f"exceeded server.decision_timeout ({self.budget:g}s)"
        else:  # every phase ran and none decided: never an allow by default
            log.error("request %s: no phase decided; denying with 503", request.request_id)
            check.denial = unavailable("authz failed to decide; retry later")
        check.phase = phase.name if phase is not None else ""
        return check

    def decide_cached(self, request: Request) -> Allow | None:
        """The allow for a request every phase can answer from its cache, without awaiting; else None.

        Each phase answers in the order of :meth:`decide` or not at all; denials are never answered here (the
        full path renders them), so this never answers differently from :meth:`decide`.
        """
        check = self.evaluate_cached(request)
        return None if check is None else check.allow

    def evaluate_cached(self, request: Request) -> Check | None:
        """:meth:`decide_cached`, returning the :class:`Check` (``allow`` and ``phase`` set), or None."""
        check = Check(request)
        for phase in self.phases:
            if not phase.cached(check):
                return None
            if check.allow is not None:
                check.phase = phase.name
                return check
        return None
