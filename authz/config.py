"""YAML configuration: validated, immutable settings (pydantic v2).

``load_config(path)`` reads the file, applies the environment overrides (``AUTHZ_LISTEN``,
``AUTHZ_REDIS_URL``, ``AUTHZ_ADMIN_TOKEN``) and validates everything; it raises :class:`ConfigError` listing every problem with
its YAML path (``key_managers[0].issuer: field required``). The full reference is ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
_API_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# A literal path segment as it appears in a canonical request path (see authz.decide.routes.normalize_path): unreserved
# characters and sub-delimiters, never ';' (requests with path parameters are refused), never '%'.
_LITERAL_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()+,=:@-]+$")
_TEMPLATE_SEGMENT = re.compile(r"^(\{[A-Za-z_][A-Za-z0-9_]*\}|\*|\*\*)$")
# RFC 6749 section 3.3 scope-token: %x21 / %x23-5B / %x5D-7E.
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
# RFC 6750 section 3 quoted attribute values: %x20-21 / %x23-5B / %x5D-7E.
_RFC6750_VALUE = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]+$")
_HOSTNAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_IPV6_LITERAL = re.compile(r"^\[[0-9a-f:.]+\]$")

ENV_LISTEN = "AUTHZ_LISTEN"
ENV_REDIS_URL = "AUTHZ_REDIS_URL"
ENV_ADMIN_TOKEN = "AUTHZ_ADMIN_TOKEN"

PositiveSeconds = Annotated[float, Field(gt=0)]
ListenAddress = Annotated[str, AfterValidator(lambda value: _check_listen(value))]  # defined below
"""A ``host:port`` to listen on (host name, IPv4 or [IPv6] address; port 1-65535)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JwksSettings(_Model):
    """JWKS cache of one key manager (RFC 7517). All durations in seconds."""

    refresh_interval: PositiveSeconds = 300.0
    """Background refresh period of the key set."""
    kid_refetch_cooldown: PositiveSeconds = 30.0
    """Minimum time between two forced refetches caused by an unknown ``kid`` (single-flight)."""
    max_stale: PositiveSeconds = 3600.0
    """How long the last good key set keeps being used after refreshes start failing; then 503."""
    timeout: PositiveSeconds = 5.0
    """Timeout of one JWKS HTTP fetch."""
    retry_interval: PositiveSeconds = 5.0
    """Delay before retrying a failed background fetch (doubles up to ``refresh_interval``)."""
    forced_refetch_wait: PositiveSeconds = 0.2
    """How long a check with an unknown ``kid`` waits for the forced refetch before answering 401
    (the fetch itself goes on); keep it below ``server.decision_timeout``."""
    min_refresh_interval: PositiveSeconds = 60.0
    """Lower bound applied to a JWKS response's ``Cache-Control: max-age`` (also used for ``no-cache``,
    ``no-store`` and ``max-age=0``)."""
    max_refresh_interval: PositiveSeconds = 3600.0
    """Upper bound applied to a JWKS response's ``Cache-Control: max-age``."""

    @model_validator(mode="after")
    def _bounds(self) -> JwksSettings:
        if self.min_refresh_interval > self.max_refresh_interval:
            raise ValueError("jwks.min_refresh_interval must not be above jwks.max_refresh_interval")
        return self


class CertificateFile(_Model):
    """A static verification key: a PEM X.509 certificate or public key file (instead of a JWKS)."""

    path: Annotated[str, Field(min_length=1)]
    """The PEM file (relative paths are relative to the working directory); its first PEM block is used."""
    kid: Annotated[str, Field(min_length=1)] | None = None
    """``kid`` tokens name this key by; None: the key has no kid and is chosen by the token's ``alg``."""

    @model_validator(mode="after")
    def _loadable(self) -> CertificateFile:
        from authz.keys.pem import load_pem_file

        load_pem_file(self.path)  # raises ValueError with the reason
        return self


class KeyManagerSettings(_Model):
    """An external OAuth2 / OIDC key manager (identity provider) whose access tokens authz accepts."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    preset: Literal["keycloak", "auth0", "okta", "entra-v1", "entra-v2", "asgardeo"] | None = None
    """Defaults for the token shape of a known identity provider (``authz.keys.presets``); explicit fields win."""
    issuer: Annotated[str, Field(min_length=1)]
    """Exact ``iss`` of its tokens (one trailing ``/`` is ignored on both sides)."""
    jwks_uri: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """URL of the JWK Set. Exactly one of ``jwks_uri``, ``discovery`` and ``certificates`` is set."""
    discovery: Literal["oidc", "oauth"] | None = None
    """Find ``jwks_uri`` in the issuer's metadata: ``oidc`` = ``{issuer}/.well-known/openid-configuration``
    (OpenID Connect Discovery 1.0), ``oauth`` = RFC 8414 ``/.well-known/oauth-authorization-server``."""
    certificates: list[CertificateFile] = []
    """Static PEM certificates or public keys used instead of a JWKS."""
    audiences: list[Annotated[str, Field(min_length=1)]] = []
    """Accepted ``aud`` values (any-of). Empty: ``aud`` is not checked."""
    algorithms: Annotated[list[str], Field(min_length=1)] = ["RS256"]
    client_id_claims: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = [
        "azp", "client_id",
    ]
    scope_claims: list[Annotated[str, Field(min_length=1)]] = ["scope", "scp"]
    leeway: Annotated[float, Field(ge=0, le=600)] = 60.0
    """Clock-skew allowance in seconds on ``exp``, ``nbf`` and ``iat``."""
    verify_tls: bool = True
    ca_bundle: str | None = None
    """PEM file of CA certificates trusted for the JWKS fetch (default: the system store)."""
    jwks: JwksSettings = JwksSettings()
    typ: list[Annotated[str, Field(min_length=1)]] = []
    """Accepted JWS ``typ`` header values (RFC 9068 ``at+jwt``); compared case-insensitively with an optional
    ``application/`` prefix (RFC 7515 section 4.1.9). Empty: ``typ`` is not checked."""
    required_claims: list[Annotated[str, Field(min_length=1)]] = []
    """Claims every token must carry (present and not null), besides ``exp`` and ``iss``."""
    max_token_lifetime: PositiveSeconds | None = None
    """Seconds: a token whose ``exp`` lies further than this in the future is denied (401). None: no limit."""

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        bad = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if bad:
            names = ", ".join(repr(alg) for alg in bad)
            raise ValueError(
                f"algorithm{'s' if len(bad) > 1 else ''} {names} not allowed: use asymmetric algorithms only "
                f"({', '.join(ASYMMETRIC_ALGORITHMS)}); 'none' and HMAC are never accepted"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        from authz.keys.presets import apply_preset

        return apply_preset(data) if isinstance(data, dict) else data

    @field_validator("certificates", mode="before")
    @classmethod
    def _certificate_paths(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> KeyManagerSettings:
        given = [name for name, value in (("jwks_uri", self.jwks_uri), ("discovery", self.discovery),
                                          ("certificates", self.certificates)) if value]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of jwks_uri, discovery, certificates"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.discovery and not re.match(r"^https?://[^/?#]+", self.issuer):
            raise ValueError("discovery needs an http(s) issuer URL")
        return self

    @property
    def normalized_issuer(self) -> str:
        """The issuer without one trailing slash, the form used to pick a key manager by ``iss``."""
        return normalize_issuer(self.issuer)


class ResourceSettings(_Model):
    """One resource of an API: a path template under the API's context path, its methods and scopes."""

    path: str
    """Template relative to the context, e.g. ``/items``, ``/items/{id}``, ``/files/*`` (one segment),
    ``/files/**`` (any rest, last only)."""
    methods: Annotated[list[str], Field(min_length=1)] = ["*"]
    scopes: list[Annotated[str, Field(min_length=1)]] = []
    """Scopes the token must carry; see ``scope_match``. Empty: no scope needed."""
    scope_match: Literal["any", "all"] = "any"
    auth: Literal["required", "none"] = "required"
    """``none``: a public resource; a request without credentials is allowed (and logged) without any
    identity, registry or scope check. A credential that is sent is still validated (invalid: 401)."""

    @model_validator(mode="after")
    def _public_has_no_scopes(self) -> ResourceSettings:
        if self.auth == "none" and self.scopes:
            raise ValueError("a public resource (auth: none) cannot require scopes")
        return self

    @field_validator("path")
    @classmethod
    def _template(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        segments = value.split("/")[1:]
        if value != "/":
            for i, seg in enumerate(segments):
                if not _TEMPLATE_SEGMENT.match(seg):
                    _check_literal_segment(seg)
                if seg == "**" and i != len(segments) - 1:
                    raise ValueError("'**' is allowed as the last segment only")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return [_scope_token(v) for v in value]

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        out = []
        for method in value:
            m = method.upper()
            if m != "*" and m not in HTTP_METHODS:
                raise ValueError(f"unknown HTTP method {method!r}")
            out.append(m)
        return out


class ApiBackendJwtSettings(_Model):
    """Per-API backend JWT switch (``apis[].backend_jwt``); the signing keys are the top-level ``backend_jwt``."""

    audience: Annotated[str, Field(min_length=1)] | None = None
    """``aud`` of the backend JWT; None: ``backend_jwt.audience``, else the API id."""


class ApiSettings(_Model):
    """An API published through Envoy, which applications subscribe to."""

    id: str
    name: Annotated[str, Field(min_length=1)]
    context: str
    """Base path, e.g. ``/orders/v1``; matched segment by segment."""
    version: str = ""
    hosts: list[str] = []
    """Hosts (``:authority`` without port) served; empty: any host."""
    resources: Annotated[list[ResourceSettings], Field(min_length=1)]
    headers_to_remove: list[Annotated[str, Field(min_length=1)]] | None = None
    """Headers stripped from this API's upstream requests (``OkHttpResponse.headers_to_remove``);
    None: ``headers.remove``."""
    backend_jwt: ApiBackendJwtSettings | None = None
    """Send a backend JWT signed by authz to this API's upstream (needs the top-level ``backend_jwt``)."""

    @field_validator("headers_to_remove")
    @classmethod
    def _headers_to_remove(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_header_name(v) for v in value]

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _API_ID.match(value):
            raise ValueError("must be 1-128 characters of letters, digits, '.', '_', ':', '-'")
        return value

    @field_validator("context")
    @classmethod
    def _context(cls, value: str) -> str:
        if not value.startswith("/") or (value != "/" and value.endswith("/")) or "//" in value:
            raise ValueError("must start with '/', have no trailing '/' and no empty segment")
        if value != "/":
            for seg in value.split("/")[1:]:
                _check_literal_segment(seg, templates=False)
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for host in value:
            h = host.lower()
            if not (_HOSTNAME.match(h) or _IPV6_LITERAL.match(h)):
                raise ValueError(f"{host!r} is not a host name or IP address (no port, no wildcard)")
            out.append(h)
        return out


def _header_name(value: str) -> str:
    if not _HEADER_NAME.match(value):
        raise ValueError(f"{value!r} is not a lower-case HTTP header name")
    return value


def _check_literal_segment(seg: str, templates: bool = True) -> None:
    """Refuse a literal path segment that can never equal a segment of a canonical request path."""
    if seg in (".", ".."):
        raise ValueError(f"invalid path segment {seg!r}: dot segments are not allowed")
    if not _LITERAL_SEGMENT.match(seg):
        also = " or a template ({name}, *, **)" if templates else " (no templates in a context)"
        raise ValueError(f"invalid path segment {seg!r}: use letters, digits and -._~!$&'()+,=:@{also}")


def _scope_token(value: str) -> str:
    if not _SCOPE_TOKEN.match(value):
        raise ValueError(f"{value!r} is not an RFC 6749 scope token (printable ASCII, no space, '\"' or '\\')")
    return value


HeaderName = Annotated[str, Field(min_length=1)]


class HeadersSettings(_Model):
    """Names of the headers authz sets on allowed requests (``OkHttpResponse.headers``); null disables one."""

    application_id: HeaderName | None = "x-application-id"
    application_name: HeaderName | None = "x-application-name"
    application_tier: HeaderName | None = None
    client_id: HeaderName | None = "x-client-id"
    subject: HeaderName | None = "x-subject"
    api_id: HeaderName | None = "x-api-id"
    api_version: HeaderName | None = None
    key_type: HeaderName | None = None
    scopes: HeaderName | None = None
    remove: list[HeaderName] = ["authorization"]
    """Headers stripped from the upstream request (``OkHttpResponse.headers_to_remove``)."""

    @field_validator(
        "application_id", "application_name", "client_id", "subject", "api_id", "api_version", "key_type",
        "scopes", "application_tier",
    )
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else _header_name(value)

    @field_validator("remove")
    @classmethod
    def _remove(cls, value: list[str]) -> list[str]:
        return [_header_name(v) for v in value]

    @model_validator(mode="after")
    def _distinct(self) -> HeadersSettings:
        # One header carries one value: two settings naming the same header would silently drop one of them,
        # and a header both set and removed would reach the upstream or not depending on Envoy's order.
        fields = (
            "application_id", "application_name", "client_id", "subject", "api_id", "api_version", "key_type",
            "scopes", "application_tier",
        )
        seen: dict[str, str] = {}
        problems = []
        for field_name in fields:
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


class RedisSettings(_Model):
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
            from authz.registry.redis_store import parse_sentinel_url

            parse_sentinel_url(value)  # raises ValueError with the reason
        if "+cluster://" in value:
            from authz.registry.redis_store import parse_cluster_url

            parse_cluster_url(value)  # raises ValueError with the reason
        return value

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, value: str, info: ValidationInfo) -> str:
        # Redis Cluster: every registry key must hash to one slot (the Lua scripts touch several keys).
        if "+cluster://" in str(info.data.get("url", "")):
            from authz.registry.redis_store import cluster_hash_tag

            if cluster_hash_tag(value) is None:
                raise ValueError(
                    f"{value!r} has no hash tag: with a redis+cluster:// URL the prefix must contain one, e.g. "
                    "'{authz}:', so that every registry key is in one cluster slot (see docs/registry.md)"
                )
        return value


class AdminSettings(_Model):
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
            if len(text) < 16 or not _RFC6750_VALUE.match(text) or " " in text:
                raise ValueError("must be at least 16 printable ASCII characters without spaces, '\"' or '\\'")
        return value


class ServerSettings(_Model):
    """The gRPC server."""

    listen: ListenAddress = "127.0.0.1:9191"
    """``host:port`` of the ``envoy.service.auth.v3.Authorization`` gRPC service (worker 0; worker I listens
    on the port + I)."""
    workers: Annotated[int, Field(ge=0, le=64)] = 0
    """Worker processes, each on its own port; 0: one per CPU."""
    route_cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Most (path, method, host, api_id) route resolutions kept per worker; 0 disables the cache."""
    max_receive_message_bytes: Annotated[int, Field(ge=64 * 1024)] = 8 * 1024 * 1024
    decision_timeout: PositiveSeconds = 0.4
    """Budget in seconds of one Check; past it authz denies with 503 (keep it below Envoy's ext_authz timeout)."""
    grace_period: Annotated[float, Field(ge=0)] = 5.0
    """Seconds in-flight calls get to finish on SIGTERM/SIGINT."""
    http_listen: ListenAddress | None = None
    """``host:port`` of the Envoy HTTP ext_authz (``http_service``) listener, next to the gRPC one (worker I
    listens on the port + I); None: not served. See docs/operations.md "Envoy HTTP ext_authz mode"."""


class TokenSettings(_Model):
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


class BackendJwtKeySettings(_Model):
    """One signing key of the backend JWT (``backend_jwt.keys[]``)."""

    kid: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
    algorithm: Literal["RS256", "ES256"] = "RS256"
    key_file: Annotated[str, Field(min_length=1)]
    """PEM file of the private key (PKCS#8 or traditional, unencrypted): RSA of at least 2048 bits for
    RS256, EC P-256 for ES256."""

    @model_validator(mode="after")
    def _key(self) -> BackendJwtKeySettings:
        load_signing_key(self.key_file, self.algorithm)
        return self


def load_signing_key(path: str, algorithm: str) -> Any:
    """Read a PEM private key and check that it fits ``algorithm``.

    Args:
        path: PEM file (unencrypted PKCS#8 or traditional OpenSSL format).
        algorithm: ``RS256`` (RSA, at least 2048 bits) or ``ES256`` (EC on P-256).
    Returns:
        The ``cryptography`` private key object.
    Raises:
        ValueError: unreadable file, not a PEM private key, or a key of the wrong type or size.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # Never echo the file's content: it is key material.
        raise ValueError(f"{path!r} is not an unencrypted PEM private key ({type(exc).__name__})") from None
    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise ValueError(f"{path!r}: RS256 needs an RSA private key of at least 2048 bits")
    elif not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path!r}: ES256 needs an EC private key on the P-256 curve")
    return key


class BackendJwtSettings(_Model):
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
        return _header_name(value)

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: list[str]) -> list[str]:
        reserved = [c for c in value if c in BACKEND_JWT_RESERVED_CLAIMS]
        if reserved:
            raise ValueError(f"{', '.join(map(repr, reserved))}: set by authz, cannot be copied from the token")
        return value


    @model_validator(mode="after")
    def _unique_kids(self) -> BackendJwtSettings:
        problems = _no_duplicates("backend_jwt.keys", "kid", [k.kid for k in self.keys])
        if problems:
            raise ValueError("\n".join(problems))
        return self


class Settings(_Model):
    """The whole configuration file."""

    server: ServerSettings = ServerSettings()
    realm: str = "authz"
    """``realm`` of the ``WWW-Authenticate`` challenge (RFC 6750 characters: printable ASCII but ``"`` and ``\\``)."""
    redis: RedisSettings = RedisSettings()
    admin: AdminSettings = AdminSettings()
    tokens: TokenSettings = TokenSettings()
    key_managers: Annotated[list[KeyManagerSettings], Field(min_length=1)]
    apis: Annotated[list[ApiSettings], Field(min_length=1)]
    headers: HeadersSettings = HeadersSettings()
    backend_jwt: BackendJwtSettings | None = None

    @model_validator(mode="after")
    def _api_headers(self) -> Settings:
        problems = []
        h = self.headers
        set_names = {
            getattr(h, f) for f in ("application_id", "application_name", "application_tier", "client_id",
                                    "subject", "api_id", "api_version", "key_type", "scopes")
        } - {None}
        if self.backend_jwt is not None:
            if self.backend_jwt.header in set_names:
                problems.append(f"backend_jwt.header: {self.backend_jwt.header!r} is already set by headers")
            set_names.add(self.backend_jwt.header)
        for index, api in enumerate(self.apis):
            for j, name in enumerate(api.headers_to_remove or ()):
                if name in set_names:
                    problems.append(f"apis[{index}].headers_to_remove[{j}]: {name!r} is a header authz sets")
            if api.backend_jwt is not None and self.backend_jwt is None:
                problems.append(f"apis[{index}].backend_jwt: needs the top-level backend_jwt section (keys)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        if not _RFC6750_VALUE.match(value):
            raise ValueError("must be non-empty printable ASCII without '\"' or '\\' (RFC 6750 section 3)")
        return value

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        problems = _duplicates(
            [km.name for km in self.key_managers],
            [km.issuer for km in self.key_managers],
            [api.id for api in self.apis],
        )
        # Two APIs on the same context and hosts: matching by path would be ambiguous.
        seen: dict[tuple[str, ...], int] = {}
        for index, api in enumerate(self.apis):
            key = (api.context, *sorted(api.hosts))
            if key in seen:
                problems.append(
                    f"apis[{index}].context: {api.context!r} on the same hosts is already used by apis[{seen[key]}]"
                )
            seen.setdefault(key, index)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def key_manager(self, name: str) -> KeyManagerSettings:
        """The key manager called ``name``; raises KeyError when there is none."""
        for km in self.key_managers:
            if km.name == name:
                return km
        raise KeyError(name)

    def api(self, api_id: str) -> ApiSettings | None:
        """The API with this ``id``, or None."""
        for api in self.apis:
            if api.id == api_id:
                return api
        return None


def _no_duplicates(section: str, field_name: str, values: list[Any]) -> list[str]:
    """One ``path: reason`` line per repeated value (None values, i.e. absent or invalid, are skipped)."""
    seen: dict[Any, int] = {}
    problems = []
    for index, value in enumerate(values):
        if value is None:
            continue
        if value in seen:
            problems.append(f"{section}[{index}].{field_name}: {value!r} is already used by {section}[{seen[value]}]")
        else:
            seen[value] = index
    return problems


def _duplicates(names: list[Any], issuers: list[Any], api_ids: list[Any]) -> list[str]:
    return (
        _no_duplicates("key_managers", "name", names)
        + _no_duplicates(
            "key_managers", "issuer", [normalize_issuer(i) if isinstance(i, str) else None for i in issuers]
        )
        + _no_duplicates("apis", "id", api_ids)
    )


def _raw_duplicates(data: Mapping[str, Any]) -> list[str]:
    """Duplicate names, issuers and API IDs in a raw document, for reporting next to field errors
    (pydantic runs the model-level check only when every field is valid)."""

    def column(section: str, key: str) -> list[Any]:
        items = data.get(section)
        if not isinstance(items, list):
            return []
        out = []
        for item in items:
            value = item.get(key) if isinstance(item, dict) else None
            out.append(value if isinstance(value, str) else None)
        return out

    return _duplicates(column("key_managers", "name"), column("key_managers", "issuer"), column("apis", "id"))


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    valid_host = bool(_HOSTNAME.match(host.lower()) or _IPV6_LITERAL.match(host.lower()))
    valid_port = bool(re.fullmatch(r"[0-9]{1,5}", port)) and 0 < int(port) < 65536
    if not sep or not valid_host or not valid_port:
        raise ValueError(
            f"{value!r} is not host:port (a host name, IPv4 address or [IPv6] address, and a port 1-65535)"
        )
    return value


def serving_errors(settings: Settings) -> list[str]:
    """What ``authz serve`` needs beyond a valid file, as ``path: reason`` lines (also printed by
    ``authz check-config``); tools that only read the registry need none of it.

    Args:
        settings: validated settings, environment overrides applied.
    Returns:
        The problems; empty when the config can be served.
    """
    errors = []
    if settings.admin.listen is not None and settings.admin.token is None:
        errors.append(f"admin.token: is required when admin.listen is set (or set {ENV_ADMIN_TOKEN})")
    return errors


def normalize_issuer(issuer: str) -> str:
    """Drop exactly one trailing ``/`` from an issuer URL (``https://idp/`` and ``https://idp`` are one issuer).

    Args:
        issuer: the ``iss`` claim or a configured issuer.
    Returns:
        The issuer without one trailing slash.
    """
    return issuer[:-1] if issuer.endswith("/") else issuer


class ConfigError(Exception):
    """The configuration is invalid.

    Attributes:
        errors: one line per problem, ``<yaml path>: <reason>``.
    """

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _format_validation_error(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        msg = msg[:1].lower() + msg[1:]
        # Errors raised by model validators carry their own path already, one problem per line.
        if ": " in msg and msg.startswith(("key_managers[", "apis[", "headers.", "backend_jwt.")):
            lines.extend(msg.splitlines())
        else:
            lines.append(f"{_format_loc(loc)}: {msg}")
    return lines


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Settings:
    """Validate an already-parsed YAML document.

    Args:
        data: the YAML document (a mapping).
        env: environment for the overrides ``AUTHZ_LISTEN``, ``AUTHZ_REDIS_URL`` and ``AUTHZ_ADMIN_TOKEN``
            (default: none applied).
    Returns:
        The validated :class:`Settings`.
    Raises:
        ConfigError: with one ``path: reason`` line per problem.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping, got {type(data).__name__}"])
    data = dict(data)
    env = env or {}
    for variable, section, key in (
        (ENV_LISTEN, "server", "listen"), (ENV_REDIS_URL, "redis", "url"), (ENV_ADMIN_TOKEN, "admin", "token"),
    ):
        if env.get(variable):
            current = data.get(section)
            if current is None or isinstance(current, dict):
                data[section] = {**(current or {}), key: env[variable]}
            # else: the section is not a mapping; validation reports it.
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        errors = _format_validation_error(exc)
        errors += [line for line in _raw_duplicates(data) if line not in errors]
        raise ConfigError(errors) from None


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read, parse and validate a YAML config file.

    Args:
        path: the YAML file.
        env: environment for the overrides; defaults to ``os.environ``.
    Returns:
        The validated :class:`Settings`.
    Raises:
        ConfigError: unreadable file, YAML syntax error (with line and column) or invalid fields.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{p}: {where}invalid YAML: {problem}"]) from None
    return parse_config(data, os.environ if env is None else env)
