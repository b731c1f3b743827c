"""Shared pieces of the configuration model: the base model, value types, syntax rules and checks."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
API_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# A literal path segment as it appears in a canonical request path (see authz.decide.routes.normalize_path): unreserved
# characters and sub-delimiters, never ';' (requests with path parameters are refused), never '%'.
LITERAL_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()+,=:@-]+$")
TEMPLATE_SEGMENT = re.compile(r"^(\{[A-Za-z_][A-Za-z0-9_]*\}|\*|\*\*)$")
# RFC 6749 section 3.3 scope-token: %x21 / %x23-5B / %x5D-7E.
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
# RFC 6750 section 3 quoted attribute values: %x20-21 / %x23-5B / %x5D-7E.
RFC6750_VALUE = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]+$")
HOSTNAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
IPV6_LITERAL = re.compile(r"^\[[0-9a-f:.]+\]$")

ENV_CONFIG = "AUTHZ_CONFIG"
ENV_LISTEN = "AUTHZ_LISTEN"
ENV_HTTP_LISTEN = "AUTHZ_HTTP_LISTEN"
ENV_REDIS_URL = "AUTHZ_REDIS_URL"
ENV_ADMIN_TOKEN = "AUTHZ_ADMIN_TOKEN"

ENV_OVERRIDES: tuple[tuple[str, str, str], ...] = (
    (ENV_LISTEN, "server", "listen"),
    (ENV_HTTP_LISTEN, "server", "http_listen"),
    (ENV_REDIS_URL, "redis", "url"),
    (ENV_ADMIN_TOKEN, "admin", "token"),
)
"""The environment variables that override a config field, as ``(variable, section, field)``: what a deployment
sets per container or pod (``AUTHZ_CONFIG`` names the file itself)."""

PositiveSeconds = Annotated[float, Field(gt=0)]
ListenAddress = Annotated[str, AfterValidator(lambda value: check_listen(value))]
"""A ``host:port`` to listen on (host name, IPv4 or [IPv6] address; port 1-65535)."""


class ConfigModel(BaseModel):
    """Base of every config section: unknown fields are errors, values are immutable, and each field's
    docstring is its description (the source of docs/configuration.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def header_name(value: str) -> str:
    if not HEADER_NAME.match(value):
        raise ValueError(f"{value!r} is not a lower-case HTTP header name")
    return value


def check_literal_segment(seg: str, templates: bool = True) -> None:
    """Refuse a literal path segment that can never equal a segment of a canonical request path."""
    if seg in (".", ".."):
        raise ValueError(f"invalid path segment {seg!r}: dot segments are not allowed")
    if not LITERAL_SEGMENT.match(seg):
        also = " or a template ({name}, *, **)" if templates else " (no templates in a context)"
        raise ValueError(f"invalid path segment {seg!r}: use letters, digits and -._~!$&'()+,=:@{also}")


def scope_token(value: str) -> str:
    if not SCOPE_TOKEN.match(value):
        raise ValueError(f"{value!r} is not an RFC 6749 scope token (printable ASCII, no space, '\"' or '\\')")
    return value


HeaderName = Annotated[str, Field(min_length=1)]


def no_duplicates(section: str, field_name: str, values: list[Any]) -> list[str]:
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


def check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    valid_host = bool(HOSTNAME.match(host.lower()) or IPV6_LITERAL.match(host.lower()))
    valid_port = bool(re.fullmatch(r"[0-9]{1,5}", port)) and 0 < int(port) < 65536
    if not sep or not valid_host or not valid_port:
        raise ValueError(
            f"{value!r} is not host:port (a host name, IPv4 address or [IPv6] address, and a port 1-65535)"
        )
    return value


def normalize_issuer(issuer: str) -> str:
    """Drop exactly one trailing ``/`` from an issuer URL (``https://idp/`` and ``https://idp`` are one issuer).

    Args:
        issuer: the ``iss`` claim or a configured issuer.
    Returns:
        The issuer without one trailing slash.
    """
    return issuer[:-1] if issuer.endswith("/") else issuer


