"""Respond phase: render a decision for Envoy, in gRPC mode (a ``CheckResponse``, ``envoy.service.auth.v3``)
and in HTTP mode (status, headers and body of the authorization response), from one description of each.

Allow: ``status.code = 0`` and an ``OkHttpResponse`` whose headers use ``OVERWRITE_IF_EXISTS_OR_ADD``, so a
client can never inject its own ``x-application-id``; in HTTP mode (:func:`allow_parts`) the same headers,
``x-envoy-auth-headers-to-remove`` and the dynamic metadata as headers. Deny (:func:`deny_parts`, both modes):
``status.code`` 16 or 7 and a ``DeniedHttpResponse`` with an explicit HTTP status, ``content-type:
application/json``, a JSON body ``{"code", "message", "description", "error"}`` and, where the table says so,
an RFC 6750 section 3 ``www-authenticate`` challenge.
"""

from __future__ import annotations

import json

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse, DeniedHttpResponse, OkHttpResponse
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct
from google.rpc.status_pb2 import Status

from authz.decide.forward import encode_header_value
from authz.errors import RETRY_AFTER_SECONDS, Denial
from authz.model import Allow

_OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"
"""Response header by which an HTTP authorization service names the headers Envoy strips from the upstream
request (comma-separated; Envoy ``ext_authz`` HTTP client): the HTTP form of ``OkHttpResponse.headers_to_remove``."""

def _quote(value: str) -> str:
    """The body of an RFC 6750 section 3 quoted attribute value.

    RFC 6750 allows only %x20-21 / %x23-5B / %x5D-7E there, so escaping is not enough: a ``"`` becomes
    ``'``, and backslashes, control characters and non-ASCII characters are dropped.
    """
    value = value.replace('"', "'")
    return "".join(c for c in value if 0x20 <= ord(c) <= 0x7E and c != "\\")


def challenge(denial: Denial, realm: str) -> str | None:
    """The ``WWW-Authenticate`` value for a denial (RFC 6750 section 3), or None when none is sent.

    Args:
        denial: the denial.
        realm: the configured ``realm``.
    Returns:
        e.g. ``Bearer realm="authz", error="invalid_token", error_description="..."``; without ``error``
        when no credentials were sent.
    """
    info = denial.reason.info
    if not info.challenge:
        return None
    parts = [f'Bearer realm="{_quote(realm)}"']
    if info.oauth_error:
        parts.append(f'error="{info.oauth_error}"')
        parts.append(f'error_description="{_quote(denial.description)}"')
    if denial.scope:
        parts.append(f'scope="{_quote(denial.scope)}"')
    return ", ".join(parts)


def _header(name: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=name, value=value), append_action=_OVERWRITE)


def deny_parts(denial: Denial, realm: str) -> tuple[int, list[tuple[str, str]], str]:
    """The HTTP rendering of a :class:`Denial`, shared by the gRPC and the HTTP ext_authz adapters.

    Args:
        denial: what was denied and why.
        realm: the ``realm`` of the challenge.
    Returns:
        ``(http_status, headers, body)``: headers are ``(name, value)`` pairs, ``content-type:
        application/json`` first, then ``www-authenticate`` (RFC 6750 section 3) and ``retry-after`` (seconds,
        on every 503) where they apply; the body is the compact JSON ``{"code", "message", "description",
        "error"}``.
    """
    info = denial.reason.info
    body: dict[str, object] = {"code": info.code, "message": info.message, "description": denial.description}
    if info.body_error:
        body["error"] = info.body_error
    headers = [("content-type", "application/json")]
    value = challenge(denial, realm)
    if value:
        headers.append(("www-authenticate", value))
    if denial.retry_after is not None or info.http_status == 503:
        retry = denial.retry_after if denial.retry_after is not None else RETRY_AFTER_SECONDS
        headers.append(("retry-after", str(max(0, int(retry)))))
    return info.http_status, headers, json.dumps(body, separators=(",", ":"))


def deny_response(denial: Denial, realm: str) -> CheckResponse:
    """Render a :class:`Denial`.

    Args:
        denial: what was denied and why.
        realm: the ``realm`` of the challenge.
    Returns:
        A ``CheckResponse`` with ``status.code`` 16 or 7 and a ``DeniedHttpResponse``.
    """
    info = denial.reason.info
    status, headers, body = deny_parts(denial, realm)
    return CheckResponse(
        status=Status(code=info.grpc_status, message=info.message),
        denied_response=DeniedHttpResponse(
            status=HttpStatus(code=status),
            headers=[_header(name, value) for name, value in headers],
            body=body,
        ),
    )


def allow_response(allow: Allow) -> CheckResponse:
    """Render an :class:`Allow` as ``status.code = 0`` with an ``OkHttpResponse`` and dynamic metadata."""
    metadata = Struct()
    metadata.update(dict(allow.dynamic_metadata))
    return CheckResponse(
        status=Status(code=0),
        ok_response=OkHttpResponse(
            headers=[_header(name, value) for name, value in allow.headers],
            headers_to_remove=list(allow.headers_to_remove),
        ),
        dynamic_metadata=metadata,
    )


def allow_parts(allow: Allow) -> tuple[int, list[tuple[str, str]]]:
    """The HTTP rendering of an :class:`Allow` (Envoy's HTTP ext_authz mode), the twin of :func:`allow_response`.

    Args:
        allow: the allow decision.
    Returns:
        ``(200, headers)``: the identity headers (Envoy copies those in
        ``authorization_response.allowed_upstream_headers`` onto the upstream request, overwriting client
        copies), ``x-envoy-auth-headers-to-remove`` when the allow removes headers, and one header per dynamic
        metadata entry named exactly as its key, its value through :func:`authz.decide.forward.encode_header_value` (Envoy's
        ``dynamic_metadata_from_headers`` files them under ``envoy.filters.http.ext_authz``). A metadata key
        that is also an identity header's name is not sent twice.
    """
    headers = list(allow.headers)
    if allow.headers_to_remove:
        headers.append((HEADERS_TO_REMOVE, ", ".join(allow.headers_to_remove)))
    taken = {name for name, _ in headers}
    headers.extend((key, encode_header_value(value)) for key, value in allow.dynamic_metadata.items() if key not in taken)
    return 200, headers
