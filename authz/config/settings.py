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
    RedisSettings,
    ServerSettings,
    TokenSettings,
)


class Settings(ConfigModel):
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


