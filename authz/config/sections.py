"""The service sections: ``server``, ``redis``, ``admin``, ``logging``, ``tokens``, ``headers`` and ``backend_jwt``."""

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
    """`redis://[user:password@]host:port/db`, `rediss://...` (TLS; `?ssl_ca_certs=/path/ca.pem` for a private
    CA), `unix:///path/redis.sock?db=0`, or
    `redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]` (Sentinel; `rediss+sentinel://`
    for TLS), or `redis+cluster://[[user]:password@]host:port[,host:port...]/` (Redis Cluster, database 0
    only; `rediss+cluster://` for TLS; needs a hash-tagged `key_prefix`)
    ([registry.md](registry.md#redis-url-forms))."""
    key_prefix: str = "authz:"
    """Prefix of every key and of the `events` channel; several deployments can share one Redis. With a
    `redis+cluster://` URL it must contain a hash tag, e.g. `{authz}:`, so every key is in one slot (else
    refused: `redis.key_prefix: 'authz:' has no hash tag: ...`)."""
    socket_timeout: PositiveSeconds = 0.25
    """Seconds to connect and for each command; past it the call counts as an outage."""
    cache_ttl: PositiveSeconds = 30.0
    """Seconds a registry lookup stays in the local cache. Writes invalidate it at once through pub/sub; the TTL
    bounds staleness if an event is lost."""
    negative_cache_ttl: PositiveSeconds = 5.0
    """Same for lookups that found nothing (unknown client, no subscription)."""
    cache_size: Annotated[int, Field(gt=0)] = 100_000
    """Most registry lookups (key manager, client ID, API) in the local cache (LRU)."""
    revocation_cache_size: Annotated[int, Field(gt=0)] = 100_000
    """Most revocation answers (key manager, ``jti``) in the local cache (LRU); also the most revocations a
    process remembers until they end whatever Redis says later (a registry rollback,
    [operations.md](operations.md#durability)): past that many live at once the least recently used is forgotten
    early, logged and reported by the `authz.durability` health service."""
    max_stale: Annotated[float, Field(ge=0)] = 60.0
    """During a Redis outage, seconds past its TTL a cached entry may still decide; then 503."""

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
    """`host:port` of the admin API; not served when unset. With `--workers N` only worker 0 serves it. Keep it
    on a private interface."""
    token: SecretStr | None = None
    r"""Bearer token every admin call must send (`authorization: Bearer <token>`): at least 16 printable ASCII
    characters, no spaces, no `"` or `\`. Required to serve when `listen` is set (`authz serve` and
    `check-config` refuse without it; the registry CLI reads the file without it); prefer `AUTHZ_ADMIN_TOKEN`
    over the file. Never logged."""

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
    """`host:port` of the gRPC `envoy.service.auth.v3.Authorization` service (also Health and reflection). Env
    `AUTHZ_LISTEN` overrides it."""
    workers: Annotated[int, Field(ge=0, le=64)] = 1
    """Worker processes, each on its own port counting up from `listen`'s (and `http_listen`'s); 0: one per CPU.
    The default, 1, fits a container (one process per container, replicas scale it); several workers on one
    host are an explicit choice, each port an endpoint of Envoy's authz cluster (`authz envoy-config` lists
    them)."""
    route_cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Most (path, method, host, `api_id`) route resolutions kept per worker (LRU); `0` disables the cache."""
    decision_cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Most allow decisions memoized per worker (LRU), each with its rendered answer in each front end; 0
    disables the memo. An entry lives only as long as the cached token, registry entry and route it was made
    from."""
    max_receive_message_bytes: Annotated[int, Field(ge=64 * 1024)] = 8 * 1024 * 1024
    """Largest CheckRequest accepted (8 MiB). Envoy should not send request bodies to authz (no
    `with_request_body`): a larger message is a transport error to Envoy. The HTTP ext_authz listener accepts
    one header field (the `authorization` header) up to the same size, so a token too large for
    `tokens.max_size` is a 401 in both modes, never a 400."""
    decision_timeout: PositiveSeconds = 0.4
    """Budget of one Check. Past it authz denies with 503 (never allows). Keep it below Envoy's ext_authz
    `timeout`."""
    grace_period: Annotated[float, Field(ge=0)] = 5.0
    """On SIGTERM/SIGINT, seconds in-flight checks get to finish once the listeners stopped accepting."""
    drain_grace: Annotated[float, Field(ge=0, le=300)] = 5.0
    """On SIGTERM, seconds authz keeps serving while it reports NOT_SERVING (gRPC health and the HTTP probe)
    before it stops accepting, so that Envoy's active health check (every 2 s, unhealthy after 2 failures in the
    config of `authz envoy-config`) takes it out of the cluster first. SIGINT (Ctrl-C at a terminal) skips it.
    Keep `drain_grace + grace_period` below the orchestrator's kill timeout (Kubernetes'
    `terminationGracePeriodSeconds`). See [operations](operations.md#rollouts-and-restarts)."""
    watch_config: bool = False
    """Reload the config file when its content changes (checked every second; reloaded once the new content has
    stayed the same for a second, so a file rewritten in place is not read half-written), as on SIGHUP: an invalid
    file is logged with every error and the running config kept; settings that need a restart (listen addresses,
    `workers`, `redis`, `admin`, `logging.format`) are named in the log and keep their running values. See
    [operations](operations.md#reloading-the-configuration)."""
    http_listen: ListenAddress | None = None
    """`host:port` of the HTTP/1.1 listener for Envoy's HTTP ext_authz mode (`http_service`), served next to the
    gRPC one by the same pipeline; not served when unset. With `--workers N`, worker I listens on the port +
    I. See [operations](operations.md#envoy-http-ext_authz-mode). Env `AUTHZ_HTTP_LISTEN` overrides it."""
    http_route_headers: bool = False
    """HTTP ext_authz mode: take the API and the route's environment from the `x-authz-api-id` and
    `x-authz-environment` request headers (the gRPC mode's `context_extensions` `api_id` and `environment`).
    Set it only when the Envoy in front removes client-sent copies of both headers and sets them per route, as
    the config of `authz envoy-config --authz-mode http` does; false: both headers are ignored and the API is
    matched by host and path."""
    metrics_listen: ListenAddress | None = None
    """`host:port` serving the Prometheus metrics at `/metrics` ([operations](operations.md#metrics)); not served
    when unset. With `--workers N` the supervisor serves it and every scrape shows the sum over all workers
    (prometheus-client's multiprocess mode; a worker's counts reach it within a second); with one worker the
    worker serves it itself."""


class LoggingSettings(ConfigModel):
    """What authz logs (to stderr) and in which format."""

    format: Literal["text", "json"] = "text"
    """`text`: one human-readable line per record. `json`: one JSON object per line for every record, decision
    lines included ([operations](operations.md#logs)); values that come from a request are escaped in both, so a
    request cannot forge a log line."""
    decisions: Literal["all", "denies", "none"] = "denies"
    """Which decisions get a decision line (logger `authz.decisions`, INFO): `all` (every check: tens of
    microseconds of CPU per allowed check, see [performance](performance.md#metrics-and-decision-log-cost)),
    `denies` (every denial, and every allow of a public resource called without credentials), or `none`. Every
    decision is counted in the metrics whatever this says."""


class TokenSettings(ConfigModel):
    """Limits of token validation that do not depend on the key manager."""

    max_size: Annotated[int, Field(ge=256, le=1024 * 1024)] = 16 * 1024
    """Bytes. A longer bearer token is denied 401 `invalid_token` ("too large") before any parsing, whatever
    the size of the `Authorization` header (the adapters' header-size limit, 96 KiB answered with 400, counts
    the other headers only)."""
    cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Verified tokens kept (LRU, keyed by the exact token string); `0` disables the cache."""
    cache_max_ttl: PositiveSeconds = 300.0
    """Seconds a verified token stays cached at most; never past its `exp` (+ leeway)."""


BACKEND_JWT_RESERVED_CLAIMS = frozenset({
    "iss", "sub", "aud", "iat", "nbf", "exp", "jti", "scope", "application_id", "application_name",
    "application_tier", "client_id", "api_id", "api_version", "key_type",
})
"""Claims authz sets itself in a backend JWT; ``backend_jwt.claims`` cannot copy an original claim over them."""


class BackendJwtKeySettings(ConfigModel):
    """One signing key of the backend JWT (``backend_jwt.keys[]``)."""

    kid: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
    """Key ID (`kid` of the JWS header and the JWK); unique."""
    algorithm: Literal["RS256", "ES256"] = "RS256"
    """`RS256` (RSA, at least 2048 bits) or `ES256` (EC P-256)."""
    key_file: Annotated[str, Field(min_length=1)]
    """PEM file of the private key, unencrypted (PKCS#8 or traditional). Checked by `authz check-config`; its
    content is never printed."""

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
    """At least one. The first signs; all are published (rotation: add the new key second, wait for upstream
    JWKS caches, move it first, drop the old one after `ttl`)."""
    issuer: Annotated[str, Field(min_length=1)] = "authz"
    """`iss` claim."""
    audience: Annotated[str, Field(min_length=1)] | None = None
    """Default `aud`; none: the API `id`."""
    ttl: Annotated[float, Field(gt=0, le=3600)] = 300.0
    """Seconds from `iat` to `exp` (at most 3600); never past the access token's `exp`."""
    header: HeaderName = "x-jwt-assertion"
    """Request header carrying the JWT. Removed from upstream requests of APIs without a backend JWT."""
    claims: list[Annotated[str, Field(min_length=1)]] = []
    """Allow-list of access token claims copied when present. Claims authz sets itself cannot be listed."""
    cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Signed JWTs kept per (access token, API), LRU, reused until shortly before they expire; `0` disables."""
    jwks_listen: ListenAddress | None = None
    """`host:port` of the HTTP server serving `GET /.well-known/jwks.json`; none: not served."""

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


