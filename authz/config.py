"""YAML configuration: validated, immutable settings (pydantic v2).

``load_config(path)`` reads the file, applies the environment overrides (``AUTHZ_LISTEN``,
``AUTHZ_REDIS_URL``) and validates everything; it raises :class:`ConfigError` listing every problem with
its YAML path (``key_managers[0].issuer: field required``). The full reference is ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
_API_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_TEMPLATE_SEGMENT = re.compile(r"^(\{[A-Za-z_][A-Za-z0-9_]*\}|\*|\*\*|[A-Za-z0-9._~!$&'()+,;=:@-]+)$")

ENV_LISTEN = "AUTHZ_LISTEN"
ENV_REDIS_URL = "AUTHZ_REDIS_URL"

PositiveSeconds = Annotated[float, Field(gt=0)]


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


class KeyManagerSettings(_Model):
    """An external OAuth2 / OIDC key manager (identity provider) whose access tokens authz accepts."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    issuer: Annotated[str, Field(min_length=1)]
    """Exact ``iss`` of its tokens (one trailing ``/`` is ignored on both sides)."""
    jwks_uri: Annotated[str, Field(pattern=r"^https?://")]
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

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        for alg in value:
            if alg not in ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"algorithm {alg!r} is not allowed: use asymmetric algorithms only "
                    f"({', '.join(ASYMMETRIC_ALGORITHMS)}); 'none' and HMAC are never accepted"
                )
        return value

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

    @field_validator("path")
    @classmethod
    def _template(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        segments = [s for s in value.split("/")[1:]]
        if value != "/":
            for i, seg in enumerate(segments):
                if not _TEMPLATE_SEGMENT.match(seg):
                    raise ValueError(f"invalid path segment {seg!r}")
                if seg == "**" and i != len(segments) - 1:
                    raise ValueError("'**' is allowed as the last segment only")
        return value

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
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [h.lower() for h in value]


def _header_name(value: str) -> str:
    if not _HEADER_NAME.match(value):
        raise ValueError(f"{value!r} is not a lower-case HTTP header name")
    return value


HeaderName = Annotated[str, Field(min_length=1)]


class HeadersSettings(_Model):
    """Names of the headers authz sets on allowed requests (``OkHttpResponse.headers``); null disables one."""

    application_id: HeaderName | None = "x-application-id"
    application_name: HeaderName | None = "x-application-name"
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
        "scopes",
    )
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else _header_name(value)

    @field_validator("remove")
    @classmethod
    def _remove(cls, value: list[str]) -> list[str]:
        return [_header_name(v) for v in value]


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
        if not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class ServerSettings(_Model):
    """The gRPC server."""

    listen: str = "127.0.0.1:9191"
    """``host:port`` of the ``envoy.service.auth.v3.Authorization`` gRPC service."""
    max_receive_message_bytes: Annotated[int, Field(ge=64 * 1024)] = 8 * 1024 * 1024
    decision_timeout: PositiveSeconds = 0.4
    """Budget in seconds of one Check; past it authz denies with 503 (keep it below Envoy's ext_authz timeout)."""
    grace_period: Annotated[float, Field(ge=0)] = 5.0
    """Seconds in-flight calls get to finish on SIGTERM/SIGINT."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value)


class TokenSettings(_Model):
    """Limits of token validation that do not depend on the key manager."""

    max_size: Annotated[int, Field(ge=256, le=1024 * 1024)] = 16 * 1024
    """Bytes; longer bearer tokens are denied before parsing."""
    cache_size: Annotated[int, Field(ge=0)] = 10_000
    """Verified tokens kept in memory (LRU); 0 disables the cache."""
    cache_max_ttl: PositiveSeconds = 300.0
    """Seconds a verified token stays cached at most (never past its ``exp``)."""


class Settings(_Model):
    """The whole configuration file."""

    server: ServerSettings = ServerSettings()
    realm: Annotated[str, Field(min_length=1, pattern=r'^[^"\\\x00-\x1f]+$')] = "authz"
    redis: RedisSettings = RedisSettings()
    tokens: TokenSettings = TokenSettings()
    key_managers: Annotated[list[KeyManagerSettings], Field(min_length=1)]
    apis: Annotated[list[ApiSettings], Field(min_length=1)]
    headers: HeadersSettings = HeadersSettings()

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        _no_duplicates("key_managers", "name", [km.name for km in self.key_managers])
        _no_duplicates("key_managers", "issuer", [km.normalized_issuer for km in self.key_managers])
        _no_duplicates("apis", "id", [api.id for api in self.apis])
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


def _no_duplicates(section: str, field_name: str, values: list[str]) -> None:
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in seen:
            raise ValueError(
                f"{section}[{index}].{field_name}: {value!r} is already used by {section}[{seen[value]}]"
            )
        seen[value] = index


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port (port 1-65535)")
    return value


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
        # Errors raised by the model validator carry their own path already.
        if not loc and ": " in msg and not msg.startswith("input"):
            lines.append(msg)
        else:
            lines.append(f"{_format_loc(loc)}: {msg}")
    return lines


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Settings:
    """Validate an already-parsed YAML document.

    Args:
        data: the YAML document (a mapping).
        env: environment for the overrides ``AUTHZ_LISTEN`` and ``AUTHZ_REDIS_URL`` (default: none applied).
    Returns:
        The validated :class:`Settings`.
    Raises:
        ConfigError: with one ``path: reason`` line per problem.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping, got {type(data).__name__}"])
    data = dict(data)
    env = env or {}
    if env.get(ENV_LISTEN):
        data["server"] = {**(data.get("server") or {}), "listen": env[ENV_LISTEN]}
    if env.get(ENV_REDIS_URL):
        data["redis"] = {**(data.get("redis") or {}), "url": env[ENV_REDIS_URL]}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


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
