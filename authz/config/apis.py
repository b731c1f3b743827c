"""The ``apis[]`` section: the APIs published through Envoy, their resources and scopes."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from authz.config.base import (
    API_ID,
    HOSTNAME,
    HTTP_METHODS,
    IPV6_LITERAL,
    TEMPLATE_SEGMENT,
    ConfigModel,
    check_literal_segment,
    header_name,
    scope_token,
)


class ResourceSettings(ConfigModel):
    """One resource of an API: a path template under the API's context path, its methods and scopes."""

    path: str
    """Template below the context: `/items`, `/items/{id}` (one segment), `/files/*` (one segment), `/files/**`
    (any rest, last only). The most specific template matches first. One trailing `/` on the request is
    ignored."""
    methods: Annotated[list[str], Field(min_length=1)] = ["*"]
    """HTTP methods, `*` for any."""
    scopes: list[Annotated[str, Field(min_length=1)]] = []
    """Scopes the token must carry; empty: none needed."""
    scope_match: Literal["any", "all"] = "any"
    """`any`: one of the scopes suffices (as WSO2 does); `all`: every scope is needed."""
    auth: Literal["required", "none"] = "required"
    """`none`: a public resource (see below); it cannot list `scopes`."""

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
                if not TEMPLATE_SEGMENT.match(seg):
                    check_literal_segment(seg)
                if seg == "**" and i != len(segments) - 1:
                    raise ValueError("'**' is allowed as the last segment only")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return [scope_token(v) for v in value]

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


class ApiBackendJwtSettings(ConfigModel):
    """Per-API backend JWT switch (``apis[].backend_jwt``); the signing keys are the top-level ``backend_jwt``."""

    audience: Annotated[str, Field(min_length=1)] | None = None
    """`aud` of this API's backend JWT."""


def upstream_url(value: str) -> str:
    """Check an upstream URL (``apis[].upstream``): ``http://host[:port]`` or ``https://host[:port]``, where host is a
    host name, an IPv4 address or an ``[IPv6]`` address; no user, path, query or fragment.

    Returns:
        The URL, host lower-cased, without a trailing ``/``.
    Raises:
        ValueError: with the reason.
    """
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise ValueError(f"{value!r}: the scheme must be http or https")
    host = (url.hostname or "").lower()
    bracketed = f"[{host}]" if ":" in host else host
    if not (HOSTNAME.match(bracketed) or IPV6_LITERAL.match(bracketed)):
        raise ValueError(f"{value!r}: needs a host name or IP address")
    if url.username is not None or url.path not in ("", "/") or url.query or url.fragment:
        raise ValueError(f"{value!r}: only scheme://host[:port], without user, path, query or fragment")
    if port == 0:
        raise ValueError(f"{value!r}: the port must be 1-65535")
    return f"{url.scheme}://{bracketed}" + (f":{port}" if port is not None else "")


def _hosts(value: list[str]) -> list[str]:
    out = []
    for host in value:
        h = host.lower()
        if not (HOSTNAME.match(h) or IPV6_LITERAL.match(h)):
            raise ValueError(f"{host!r} is not a host name or IP address (no port, no wildcard)")
        out.append(h)
    return out


class ApiSandboxSettings(ConfigModel):
    """The API's sandbox environment (``apis[].sandbox``), used only by ``authz envoy-config``."""

    hosts: Annotated[list[str], Field(min_length=1)]
    """Hosts (`:authority` without port) on which Envoy serves this API's sandbox routes: the same context path,
    with the route's `context_extensions` `environment: sandbox` (gRPC) or the `x-authz-environment: sandbox`
    header (HTTP mode), so only SANDBOX client IDs are accepted there. A host cannot also be a production host
    of an API."""
    upstream: str | None = None
    """`http://host:port` of the sandbox backend; none: the API's `upstream`."""

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return _hosts(value)

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str | None) -> str | None:
        return None if value is None else upstream_url(value)


class ApiSettings(ConfigModel):
    """An API published through Envoy, which applications subscribe to."""

    id: str
    """The API ID: what Envoy routes name in `context_extensions.api_id` and what applications subscribe to."""
    name: Annotated[str, Field(min_length=1)]
    """Display name."""
    context: str
    """Base path, e.g. `/orders/v1` (no trailing `/`). Matched segment by segment: `/orders/v1` does not match
    `/orders/v1x`."""
    version: str = ""
    """Informational; forwarded when `headers.api_version` is set."""
    hosts: list[str] = []
    """Hosts (`:authority` without port) this API is served on; empty: any. Used only when the route sets no
    `api_id`."""
    resources: Annotated[list[ResourceSettings], Field(min_length=1)]
    """At least one."""
    headers_to_remove: list[Annotated[str, Field(min_length=1)]] | None = None
    """Headers stripped from this API's upstream requests (`OkHttpResponse.headers_to_remove`), replacing
    `headers.remove` for this API. It cannot name a header authz sets."""
    backend_jwt: ApiBackendJwtSettings | None = None
    """`{}` or `{audience: ...}`: send a [backend JWT](backend-jwt.md) to this API's upstream. Needs the
    top-level `backend_jwt` section."""
    upstream: str | None = None
    """`http://host:port` (or `https://host[:port]`) of the API's backend, where Envoy forwards allowed
    requests. Used only by `authz envoy-config` (authz itself never calls it); none: the command's default
    upstream, else the route answers 404 after the check."""
    sandbox: ApiSandboxSettings | None = None
    """`{hosts: [...], upstream: ...}`: serve the API's sandbox environment on these hosts (`authz
    envoy-config` only)."""

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str | None) -> str | None:
        return None if value is None else upstream_url(value)

    @field_validator("headers_to_remove")
    @classmethod
    def _headers_to_remove(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [header_name(v) for v in value]

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not API_ID.match(value):
            raise ValueError("must be 1-128 characters of letters, digits, '.', '_', ':', '-'")
        return value

    @field_validator("context")
    @classmethod
    def _context(cls, value: str) -> str:
        if not value.startswith("/") or (value != "/" and value.endswith("/")) or "//" in value:
            raise ValueError("must start with '/', have no trailing '/' and no empty segment")
        if value != "/":
            for seg in value.split("/")[1:]:
                check_literal_segment(seg, templates=False)
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return _hosts(value)


