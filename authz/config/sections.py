"""The service sections: ``server``, ``redis``, ``admin``, ``tokens``, ``headers`` and ``backend_jwt``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator

from authz.config.base import (
    RFC6750_VALUE,
    ConfigModel,
    HeaderName,
    ListenAddress,
    PositiveSeconds,
    header_name,
    no_duplicates,
)
from authz.keys.pem import load_private_key_file
from authz.registry.redis_urls import cluster_hash_tag, parse_cluster_url, parse_sentinel_url


class HeadersSettings(ConfigModel):
    """Names of the headers authz sets on allowed requests (``OkHttpResponse.headers``), overwriting any copy
    the client sent; null disables one (and a client-sent copy of a configured name is removed instead)."""

    application_id: HeaderName | None = "x-application-id"
    """The application's ID."""
    application_name: HeaderName | None = "x-application-name"
    """The application's name."""
    application_tier: HeaderName | None = None
    """The application's throttling tier."""
    client_id: HeaderName | None = "x-client-id"
    """The token's OAuth2 client ID."""
    subject: HeaderName | None = "x-subject"
    """The token's ``sub`` (the end user, or the client for client-credentials tokens)."""
    api_id: HeaderName | None = "x-api-id"
    """The called API's ``id``."""
    api_version: HeaderName | None = None
    """The called API's ``version``."""
    key_type: HeaderName | None = None
    """``PRODUCTION`` or ``SANDBOX``: the key type of the client ID."""
    scopes: HeaderName | None = None
    """The token's scopes, space-separated and sorted."""
    remove: list[HeaderName] = ["authorization"]
    """Headers stripped from the upstream request (``OkHttpResponse.headers_to_remove``); an API's
    ``headers_to_remove`` replaces this list for that API."""

    @field_validator("*")
    @classmethod
    def _names(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            return [header_name(v) for v in value]
        return None if value is None else header_name(value)

    @classmethod
    def identity_fields(cls) -> tuple[str, ...]:
        """The fields that name a forwarded identity header (every field but ``remove``), in order."""
        return tuple(name for name in cls.model_fields if name != "remove")

    def identity_headers(self) -> dict[str, str]:
        """Configured identity header name -> the field that names it (disabled ones left out)."""
        return {getattr(self, f): f for f in self.identity_fields() if getattr(self, f) is not None}

    @model_validator(mode="after")
    def _distinct(self) -> HeadersSettings:
        # One header carries one value: two settings naming the same header would silently drop one of them,
        # and a header both set and removed would reach the upstream or not depending on Envoy's order.
        seen: dict[str, str] = {}
        problems = []
        for field_name in self.identity_fields():
            name = getattr(self, field_name)
            if name is None:
                continue
            if name in seen:
                problems.append(f"headers.{field_name}: {name!r} is already used by headers.{seen[name]}")
            else:
                seen[name] = field_name
        for index, name in enumerate(self.remove):
            if name in seen:
                problems.append(f"headers.remove[{index}]: {name!r} is set by headers.{seen[name]}")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class RedisSettings(ConfigModel):
    """The registry store and the local cache in front of it."""

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "authz:"
    socket_timeout: PositiveSeconds = 0.25
    """Seconds for one Redis command before it counts as an outage."""
    cache_ttl: PositiveSeconds = 30.0
    """Seconds a registry entry stays in the local cache (writes also invalidate it through pub/sub)."""
    negative_cache_ttl: PositiveSeconds = 5.0
    """Seconds an absent entry (no mapping, no subscription) stays cached."""
    cache_size: Annotated[int, Field(gt=0)] = 100_000
    """Most registry lookups (key manager, client ID, API) in the local cache (LRU)."""
    revocation_cache_size: Annotated[int, Field(gt=0)] = 100_000
    """Most revocation answers (key manager, ``jti``) in the local cache (LRU)."""
    max_stale: Annotated[float, Field(ge=0)] = 60.0
    """During a Redis outage, how long past its TTL a cached entry may still decide; then 503."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^(redis|rediss|unix|redis\+sentinel|rediss\+sentinel|redis\+cluster|rediss\+cluster)://",
                        value):
            raise ValueError("must start with redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, "
                             "redis+cluster:// or rediss+cluster://")
        if "+sentinel://" in value:
            parse_sentinel_url(value)  # raises ValueError with the reason
        if "+cluster://" in value:
            parse_cluster_url(value)  # raises ValueError with the reason
        return value

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, value: str, info: ValidationInfo) -> str:
        # Redis Cluster: every registry key must hash to one slot (the Lua scripts touch several keys).
        if "+cluster://" in str(info.data.get("url", "")):
            if cluster_hash_tag(value) is None:
                raise ValueError(
                    f"{value!r} has no hash tag: with a redis+cluster:// URL the prefix must contain one, e.g. "
                    "'{authz}:', so that every registry key is in one cluster slot (see docs/registry.md)"
                )
        return value


class AdminSettings(ConfigModel):
    """The registry admin gRPC API (``authz.admin.v1.RegistryAdmin``, docs/admin-api.md)."""

    listen: ListenAddress | None = None
    """``host:port`` of the admin API; None (default): not served."""
    token: SecretStr | None = None
    """Bearer token every admin call must send (``authorization: Bearer ...``); env ``AUTHZ_ADMIN_TOKEN``
    overrides it. At least 16 characters; required to serve the API (:func:`serving_errors`), not to read
    the config (the registry CLI reads it without the secret)."""

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            text = value.get_secret_value()
            if len(text) < 16 or not RFC6750_VALUE.match(text) or " " in text:
                raise ValueError("must be at least 16 printable ASCII characters without spaces, '\"' or '\\'")
        return value


class ServerSettings(ConfigModel):
    """The gRPC server."""

    listen: ListenAddress = "127.0.0.1:9191"
    """``host:port`` of the ``envoy.service.auth.v3.Authorization`` gRPC service (worker 0; worker I listens
    on the port + I)."""
    workers: Annotated[int, Field(ge=0, le=64)] = 0
    """Worker processes, each on its own port; 0: one per CPU."""
    route_cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Most (path, method, host, api_id) route resolutions kept per worker (LRU); 0 disables the cache."""
    decision_cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Most allow decisions memoized per worker (LRU), each with its rendered answer in each front end; 0
    disables the memo. An entry lives only as long as the cached token, registry entry and route it was made
    from."""
    max_receive_message_bytes: Annotated[int, Field(ge=64 * 1024)] = 8 * 1024 * 1024
    decision_timeout: PositiveSeconds = 0.4
    """Budget in seconds of one Check; past it authz denies with 503 (keep it below Envoy's ext_authz timeout)."""
    grace_period: Annotated[float, Field(ge=0)] = 5.0
    """Seconds in-flight calls get to finish on SIGTERM/SIGINT."""
    http_listen: ListenAddress | None = None
    """``host:port`` of the Envoy HTTP ext_authz (``http_service``) listener, next to the gRPC one (worker I
    listens on the port + I); None: not served. See docs/operations.md "Envoy HTTP ext_authz mode"."""


class TokenSettings(ConfigModel):
    """Limits of token validation that do not depend on the key manager."""

    max_size: Annotated[int, Field(ge=256, le=1024 * 1024)] = 16 * 1024
    """Bytes; longer bearer tokens are denied before parsing."""
    cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Verified tokens kept in memory (LRU); 0 disables the cache."""
    cache_max_ttl: PositiveSeconds = 300.0
    """Seconds a verified token stays cached at most (never past its ``exp``)."""


BACKEND_JWT_RESERVED_CLAIMS = frozenset({
    "iss", "sub", "aud", "iat", "nbf", "exp", "jti", "scope", "application_id", "application_name",
    "application_tier", "client_id", "api_id", "api_version", "key_type",
})
"""Claims authz sets itself in a backend JWT; ``backend_jwt.claims`` cannot copy an original claim over them."""


class BackendJwtKeySettings(ConfigModel):
    """One signing key of the backend JWT (``backend_jwt.keys[]``)."""

    kid: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
    algorithm: Literal["RS256", "ES256"] = "RS256"
    key_file: Annotated[str, Field(min_length=1)]
    """PEM file of the private key (PKCS#8 or traditional, unencrypted): RSA of at least 2048 bits for
    RS256, EC P-256 for ES256."""

    _private_key: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _key(self) -> BackendJwtKeySettings:
        self._private_key = load_private_key_file(self.key_file, self.algorithm)
        return self

    @property
    def private_key(self) -> Any:
        """The ``cryptography`` private key, loaded (and checked) once, when the config was validated."""
        return self._private_key


class BackendJwtSettings(ConfigModel):
    """The backend JWT authz signs for upstreams of APIs with ``backend_jwt`` set, and its public JWKS."""

    keys: Annotated[list[BackendJwtKeySettings], Field(min_length=1)]
    """Signing keys: the first signs, all are published in the JWKS (list a new key second, publish, then
    move it first; drop the old one after ``ttl``)."""
    issuer: Annotated[str, Field(min_length=1)] = "authz"
    audience: Annotated[str, Field(min_length=1)] | None = None
    """Default ``aud``; None: the API id. ``apis[].backend_jwt.audience`` overrides it."""
    ttl: Annotated[float, Field(gt=0, le=3600)] = 300.0
    """Seconds from ``iat`` to ``exp`` (never past the access token's ``exp``)."""
    header: HeaderName = "x-jwt-assertion"
    claims: list[Annotated[str, Field(min_length=1)]] = []
    """Allow-list of the access token's claims copied into the backend JWT (when present)."""
    cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Backend JWTs kept per (access token, API), LRU; 0 disables the cache."""
    jwks_listen: ListenAddress | None = None
    """``host:port`` of the HTTP server publishing ``/.well-known/jwks.json``; None: not served."""

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return header_name(value)

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: list[str]) -> list[str]:
        reserved = [c for c in value if c in BACKEND_JWT_RESERVED_CLAIMS]
        if reserved:
            raise ValueError(f"{', '.join(map(repr, reserved))}: set by authz, cannot be copied from the token")
        return value

    @model_validator(mode="after")
    def _unique_kids(self) -> BackendJwtSettings:
        problems = no_duplicates("backend_jwt.keys", "kid", [k.kid for k in self.keys])
        if problems:
            raise ValueError("\n".join(problems))
        return self


