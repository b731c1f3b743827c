"""The whole configuration file (:class:`Settings`) and the checks that span its sections."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from authz.config.apis import ApiSettings
from authz.config.base import ENV_ADMIN_TOKEN, RFC6750_VALUE, ConfigModel, no_duplicates, normalize_issuer
from authz.config.key_managers import KeyManagerSettings
from authz.config.sections import (
    AdminSettings,
    BackendJwtSettings,
    HeadersSettings,
    LoggingSettings,
    RedisSettings,
    ServerSettings,
    TokenSettings,
)


class Settings(ConfigModel):
    """The whole configuration file."""

    server: ServerSettings = ServerSettings()
    """The Check servers (gRPC, and Envoy's HTTP ext_authz mode), their budget, caches and process model."""
    realm: str = "authz"
    """The `realm` of the `WWW-Authenticate: Bearer` challenge (RFC 6750 section 3). No quotes, backslashes or
    control characters."""
    redis: RedisSettings = RedisSettings()
    """The registry's Redis and the local cache in front of it. The revoked-token cache (`jti` per key manager)
    uses the same `cache_ttl` and `max_stale`, and its own `revocation_cache_size`."""
    admin: AdminSettings = AdminSettings()
    """The registry admin gRPC API ([admin-api.md](admin-api.md)), served by `authz serve` on its own port."""
    logging: LoggingSettings = LoggingSettings()
    """The log format and which decisions are logged ([operations](operations.md#logs)). Tokens and secrets are
    never logged: a decision line names a token by the first 12 hex digits of its SHA-256."""
    tokens: TokenSettings = TokenSettings()
    """Limits of token validation that do not depend on the key manager."""
    key_managers: Annotated[list[KeyManagerSettings], Field(min_length=1)]
    """One entry per trusted OAuth2 / OIDC identity provider. At least one. Exactly one of `jwks_uri`, `discovery`
    and `certificates` says where its keys come from. Presets, discovery, static keys and one page per IdP:
    [key-managers/](key-managers/README.md)."""
    apis: Annotated[list[ApiSettings], Field(min_length=1)]
    """The APIs published through Envoy. At least one (a config with key managers only is refused with `apis:
    field required`). A request that matches no API or resource is denied 403 (900906) once the caller is
    authenticated.

    **Public resources** (`auth: none`): a request without an `authorization` header is allowed without any
    token, application, subscription or scope check, and logged (a decision line with `phase=public`, under
    `logging.decisions` `denies` or `all`). No identity is forwarded: every configured identity header and the backend JWT
    header are removed from the upstream request, and the dynamic metadata carries only `{"api_id", "auth":
    "none"}`. A credential that *is* sent is still validated: an invalid, expired or non-Bearer credential is a 401
    (C19: an invalid credential is never silently ignored); a valid token is allowed without registry or scope
    checks and forwards no identity either. Matching is segment-aware and on the canonical path, so
    `/public/../items` is the protected `/items` and `/publicity` is not `/public`."""
    headers: HeadersSettings = HeadersSettings()
    """Names of the headers set on allowed requests (`OkHttpResponse.headers`, overwriting client-sent copies).
    `null` disables one. Names must be lower case. A value containing a control character (CR, LF, NUL...) is
    never forwarded."""
    backend_jwt: BackendJwtSettings | None = None
    """Optional. The keys and claims of the [backend JWT](backend-jwt.md) sent to the upstreams of APIs with
    `apis[].backend_jwt`, and the HTTP server publishing its public keys."""
    gateway_url: Annotated[str, Field(pattern=r"^https?://[^/?#@]+(/[^?#]*)?$")] | None = None
    """Base URL at which developers call the APIs through Envoy (`https://api.example.com`), used in the call
    through the gateway shown with token instructions (`authz registry app add-client`, `app show`, the admin
    API's `DescribeApplication`). No query, fragment or user info. None: the call shows `<GATEWAY_URL>`."""

    @model_validator(mode="after")
    def _api_headers(self) -> Settings:
        problems = []
        set_names = set(self.headers.identity_headers())
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
        if not RFC6750_VALUE.match(value):
            raise ValueError("must be non-empty printable ASCII without '\"' or '\\' (RFC 6750 section 3)")
        return value

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        problems = duplicates(
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
        production = {host: index for index, api in enumerate(self.apis) for host in api.hosts}
        for index, api in enumerate(self.apis):
            for j, host in enumerate(api.sandbox.hosts if api.sandbox else ()):
                if host in production:
                    problems.append(f"apis[{index}].sandbox.hosts[{j}]: {host!r} is a production host of "
                                    f"apis[{production[host]}]; a host serves one environment")
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


def duplicates(names: list[Any], issuers: list[Any], api_ids: list[Any]) -> list[str]:
    return (
        no_duplicates("key_managers", "name", names)
        + no_duplicates(
            "key_managers", "issuer", [normalize_issuer(i) if isinstance(i, str) else None for i in issuers]
        )
        + no_duplicates("apis", "id", api_ids)
    )


def raw_duplicates(data: Mapping[str, Any]) -> list[str]:
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

    return duplicates(column("key_managers", "name"), column("key_managers", "issuer"), column("apis", "id"))


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


