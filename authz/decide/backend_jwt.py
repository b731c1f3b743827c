"""Backend JWT: a short-lived JWT signed by authz's own key, telling the upstream who is calling.

For an API with ``backend_jwt`` set, an allowed request carries (in ``backend_jwt.header``, default
``x-jwt-assertion``) a JWS (RFC 7515) signed with the first key of ``backend_jwt.keys`` (RS256 or ES256,
``kid`` in the header). Claims (RFC 7519 plus authz's own):

``iss`` (``backend_jwt.issuer``), ``sub`` (the access token's ``sub``, or the client ID when it has none),
``aud`` (``apis[].backend_jwt.audience``, else ``backend_jwt.audience``, else the API id), ``iat``,
``exp`` (``iat + backend_jwt.ttl``, never past the access token's ``exp``), ``jti`` (random),
``application_id``, ``application_name``, ``application_tier``, ``client_id``, ``api_id``,
``api_version``, ``key_type``, ``scope`` (space-separated, sorted), and every claim of the access token
named in ``backend_jwt.claims`` that the token carries.

Upstreams verify it with the public keys authz publishes (:meth:`BackendJwtSigner.jwks`, served by
:mod:`authz.ops.jwks_endpoint`). A signed JWT is cached per (access token, API) until shortly before it
expires, in a bounded LRU.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from authz.cache import BoundedCache
from authz.config import BackendJwtSettings
from authz.decide.routes import Route
from authz.model import Application, ClientBinding, Identity


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    algorithm: str
    private_key: Any


def public_jwk(private_key: Any, kid: str, algorithm: str) -> dict[str, Any]:
    """The public JWK (RFC 7517) of a signing key, with ``kid``, ``alg`` and ``use: sig``.

    Args:
        private_key: a ``cryptography`` RSA or EC private key.
        kid: key ID.
        algorithm: ``RS256`` or ``ES256``.
    Returns:
        A JSON-serializable dict, e.g. ``{"kty": "RSA", "n": ..., "e": ..., "kid": ..., "alg": "RS256", "use": "sig"}``.
    """
    impl = RSAAlgorithm if algorithm == "RS256" else ECAlgorithm
    jwk = impl.to_jwk(private_key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return jwk


class BackendJwtSigner:
    """Signs and caches backend JWTs.

    Args:
        settings: the ``backend_jwt`` section (its keys were loaded and checked when the config was validated).
        clock: seconds since the epoch (tests may pass their own).
    """

    def __init__(self, settings: BackendJwtSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._keys = [_Key(k.kid, k.algorithm, k.private_key) for k in settings.keys]
        self._clock = clock
        # (access token, API, every registry value the JWT carries) -> the signed JWT, until shortly before exp.
        self._cache: BoundedCache[tuple[str, ...], str] = BoundedCache(
            "backend_jwt", settings.cache_size, clock=clock)
        self._jwks = {"keys": [public_jwk(k.private_key, k.kid, k.algorithm) for k in self._keys]}

    @property
    def header(self) -> str:
        """Name of the request header carrying the backend JWT (``backend_jwt.header``)."""
        return self._settings.header

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (RFC 7517 section 5) of every configured key: ``{"keys": [...]}``."""
        return self._jwks

    def audience(self, route: Route) -> str:
        """The ``aud`` for ``route``'s API: per-API, else the section's default, else the API id."""
        per_api = route.api.backend_jwt.audience if route.api.backend_jwt else None
        return per_api or self._settings.audience or route.api.id

    def token_for(
        self,
        access_token: str,
        identity: Identity,
        application: Application,
        binding: ClientBinding,
        route: Route,
    ) -> str:
        """The backend JWT for this access token and API, from the cache while it has life left.

        The cache key holds every registry value the JWT carries (application ID, name and tier, key type),
        so a registry change never leaves an upstream with a stale signed identity.

        Args:
            access_token: the caller's access token (cache key only; never copied into the JWT).
            identity: the validated token.
            application: the client's application.
            binding: the client binding (key type).
            route: the matched API and resource.
        Returns:
            The compact JWS.
        """
        now = self._clock()
        key = (access_token, route.api.id, application.id, application.name, application.tier, binding.key_type)
        token = self._cache.get(key)
        if token is None:
            token, exp = self._sign(now, identity, application, binding, route)
            margin = min(30.0, self._settings.ttl / 10)
            self._cache.put(key, token, exp - margin - now)
        return token

    def _sign(
        self, now: float, identity: Identity, application: Application, binding: ClientBinding, route: Route
    ) -> tuple[str, float]:
        iat = int(now)
        exp = int(min(iat + self._settings.ttl, max(identity.expires_at, iat + 1)))
        claims: dict[str, Any] = {
            name: identity.claims[name] for name in self._settings.claims if name in identity.claims
        }
        claims.update(
            iss=self._settings.issuer,
            sub=identity.subject or identity.client_id,
            aud=self.audience(route),
            iat=iat,
            exp=exp,
            jti=uuid.uuid4().hex,
            application_id=application.id,
            application_name=application.name,
            application_tier=application.tier,
            client_id=identity.client_id,
            api_id=route.api.id,
            api_version=route.api.version,
            key_type=binding.key_type.value,
            scope=" ".join(sorted(identity.scopes)),
        )
        signer = self._keys[0]
        token = jwt.encode(claims, signer.private_key, algorithm=signer.algorithm,
                           headers={"kid": signer.kid, "typ": "JWT"})
        return token, float(exp)
