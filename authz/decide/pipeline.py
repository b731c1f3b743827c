"""The decision pipeline: the one place that knows the order of the phases.

    route (pure) -> credentials -> identity -> revocation -> [route denial] -> registry -> policy -> allow

The route is resolved first because it is pure and cheap, but a route denial is only reported after the
caller has authenticated, so an anonymous client cannot probe which APIs exist (a malformed path is a
400 at once). A public resource (``auth: none``) called without an ``authorization`` header is allowed
right after the route (logged, no identity forwarded); a credential sent to one is still validated (invalid:
401) but no registry or scope check follows. Only an explicit positive result of every phase yields an allow: an exception, a dependency
outage or the budget running out (``server.decision_timeout``) is a deny (503).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from authz.config import Settings
from authz.decide.backend_jwt import BackendJwtSigner
from authz.decide.credentials import extract_bearer
from authz.decide.forward import build_allow, build_public_allow
from authz.decide.identity import TokenValidator
from authz.decide.policy import authorize
from authz.decide.revocation import check_not_revoked
from authz.decide.routes import Route, RouteTable
from authz.errors import Denial, DependencyUnavailable, Reason
from authz.memo import ObjectMemo
from authz.model import Allow, Identity, Request
from authz.registry.cache import RegistryCache
from authz.registry.redis_store import Lookup

log = logging.getLogger("authz.decisions")

RETRY_AFTER_SECONDS = 5


def token_fingerprint(token: str) -> str:
    """First 12 hex digits of the token's SHA-256: correlates log lines without logging the token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


def unavailable(description: str) -> Denial:
    """A 503 denial for a dependency outage or an internal failure, with ``retry-after``."""
    return Denial(Reason.TEMPORARILY_UNAVAILABLE, description, retry_after=RETRY_AFTER_SECONDS)


class Pipeline:
    """Decides one request.

    Args:
        settings: the configuration (``headers``, ``server.decision_timeout``).
        routes: the route table.
        tokens: the token validator.
        registry: the registry lookups.
        backend_jwt: the backend JWT signer (``backend_jwt`` section), or None when not configured.
    """

    def __init__(
        self, settings: Settings, routes: RouteTable, tokens: TokenValidator, registry: RegistryCache,
        backend_jwt: BackendJwtSigner | None = None,
    ) -> None:
        self._backend_jwt = backend_jwt
        self._headers = settings.headers
        self._budget = settings.server.decision_timeout
        self._routes = routes
        self._tokens = tokens
        self._registry = registry
        # (identity, lookup, resource) objects + environment -> allow; sized like the token cache.
        self._decisions: ObjectMemo[Allow] = ObjectMemo(settings.tokens.cache_size)

    async def decide(self, request: Request) -> Allow | Denial:
        """Run every phase on ``request``.

        Args:
            request: the adapted request.
        Returns:
            :class:`Allow`, or the :class:`Denial` to render. Never raises for bad input or outages.
        """
        fast = self.decide_cached(request)
        if fast is not None:
            return fast
        token = ""
        try:
            async with asyncio.timeout(self._budget):
                try:
                    route = self._routes.resolve(request)
                    route_denial = None
                except Denial as denial:
                    if denial.reason is Reason.INVALID_REQUEST:
                        raise
                    route, route_denial = None, denial
                public = route is not None and route.resource.auth == "none"
                if public and "authorization" not in request.headers:
                    # A public resource called without credentials: no identity, registry or scope check.
                    return self._public(request, route)
                token = extract_bearer(request.headers)
                identity = await self._tokens.validate(token)
                await check_not_revoked(identity, self._registry)
                if route_denial is not None:
                    raise route_denial
                assert route is not None
                if public:
                    # A credential sent to a public resource was validated above (invalid: 401, never
                    # ignored); a valid one grants nothing more, so no registry or scope check.
                    return self._public(request, route)
                found = await self._registry.lookup(identity.key_manager, identity.client_id, route.api.id)
                allow = self._authorized(token, identity, found, route, request.context_extensions.get("environment"))
        except Denial as denial:
            self._log(request, token, denial)
            return denial
        except DependencyUnavailable as exc:
            log.warning("request %s: dependency unavailable: %s", request.request_id, exc)
            return unavailable("A service authz depends on is unavailable; retry later")
        except TimeoutError:
            log.warning("request %s: decision exceeded its %.3fs budget", request.request_id, self._budget)
            return unavailable("The authorization decision took too long; retry later")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request %s: allow %s %s app=%s", request.request_id, request.method, request.path[:256],
                      allow.dynamic_metadata.get("application_id"))
        return allow

    def decide_cached(self, request: Request) -> Allow | None:
        """The allow for a request whose every input is a fresh cache hit, without awaiting; else None.

        Only probes caches, in the order of :meth:`decide`: the route of an identical earlier request, the
        verified token (the exact ``Bearer`` token string), its revocation answer, the registry lookup and
        the memoized decision for those very objects. The memo holds allows only, produced by the full
        pipeline from the same objects, so this never answers differently from :meth:`decide`; any miss,
        and every denial, takes the full path.
        """
        route = self._routes.cached(request)
        if route is None or route.resource.auth == "none":
            return None
        value = request.headers.get("authorization")
        if value is None or value[:7].lower() != "bearer ":
            return None
        identity = self._tokens.cached(value[7:])
        if identity is None:
            return None
        if identity.token_id is not None and self._registry.cached_revoked(
            identity.key_manager, identity.token_id
        ) is not False:
            return None
        found = self._registry.cached_lookup(identity.key_manager, identity.client_id, route.api.id)
        if found is None:
            return None
        return self._decisions.get((identity, found, route.resource), request.context_extensions.get("environment"))

    def _authorized(
        self, token: str, identity: Identity, found: Lookup, route: Route, environment: str | None
    ) -> Allow:
        """Policy and forwarded identity, memoized on the very objects they depend on.

        The token validator and the registry cache return the same :class:`Identity` and :class:`Lookup`
        objects for as long as their entries are valid (a registry write, a key rotation or an expiry
        replaces them), so a decision keyed on those objects is exactly as fresh as its inputs. Backend
        JWTs expire on their own schedule: APIs that forward one are never memoized.

        Raises:
            Denial: from :func:`authz.decide.policy.authorize`.
        """
        memo = self._decisions.get((identity, found, route.resource), environment)
        if memo is not None:
            return memo
        application, subscription = authorize(identity, route, found, environment)
        assert found.binding is not None
        allow = build_allow(identity, application, found.binding, subscription, route, self._headers,
                            access_token=token, backend_jwt=self._backend_jwt)
        if route.api.backend_jwt is None:
            self._decisions.put((identity, found, route.resource), environment, allow)
        return allow

    def _public(self, request: Request, route: Route) -> Allow:
        """Allow a request to a public resource (``auth: none``), logged at INFO."""
        log.info("request %s: allow public %s %s api=%s", request.request_id, request.method,
                 route.path[:256], route.api.id)
        return build_public_allow(route, self._headers, self._backend_jwt)

    @staticmethod
    def _log(request: Request, token: str, denial: Denial) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request %s: deny %d %s%s%s",
                request.request_id,
                denial.reason.info.code,
                denial.description,
                f" ({denial.log_detail})" if denial.log_detail else "",
                f" token={token_fingerprint(token)}" if token else "",
            )
