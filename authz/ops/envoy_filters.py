"""The HTTP connection manager of ``authz envoy-config`` and its filters: (header_mutation,) ext_authz,
local_ratelimit, router; the JSON access log with authz's dynamic metadata.

The ext_authz filter fails closed (``failure_mode_allow: false``, ``status_on_error: 503``) and calls authz with
a timeout above ``server.decision_timeout``, so authz's own 503 deny arrives before Envoy gives up. The HTTP
connection manager normalizes the path (``normalize_path``, ``merge_slashes``) and refuses escaped slashes
(``path_with_escaped_slashes_action: REJECT_REQUEST``), so authz and the upstream see the same path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy_data_plane.envoy.config.accesslog.v3 import (
    AccessLog,
    AccessLogFilter,
    AndFilter,
    ComparisonFilter,
    ComparisonFilterOp,
    ResponseFlagFilter,
    StatusCodeFilter,
)
from envoy_data_plane.envoy.config.core.v3 import (
    ApiVersion,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    HttpUri,
    RuntimeFractionalPercent,
    RuntimeUInt32,
    SubstitutionFormatString,
)
from envoy_data_plane.envoy.config.route.v3 import (
    RateLimit,
    RateLimitAction,
    RateLimitActionMetaData,
    RouteConfiguration,
)
from envoy_data_plane.envoy.extensions.access_loggers.stream.v3 import StdoutAccessLog
from envoy_data_plane.envoy.extensions.common.ratelimit.v3 import (
    LocalRateLimitDescriptor,
    RateLimitDescriptorEntry,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
    AuthorizationResponse,
    ExtAuthz,
    HttpService,
)
from envoy_data_plane.envoy.extensions.filters.http.header_mutation.v3 import HeaderMutation
from envoy_data_plane.envoy.extensions.filters.http.local_ratelimit.v3 import LocalRateLimit
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpConnectionManagerPathWithEscapedSlashesAction,
    HttpFilter,
    LocalReplyConfig,
    ResponseMapper,
)
from envoy_data_plane.envoy.type.matcher.v3 import ListStringMatcher, StringMatcher
from envoy_data_plane.envoy.type.metadata.v3 import MetadataKey, MetadataKeyPathSegment
from envoy_data_plane.envoy.type.v3 import (
    FractionalPercent,
    FractionalPercentDenominatorType,
    HttpStatus,
    StatusCode,
    TokenBucket,
)
from envoy_data_plane.google.protobuf import Struct

from authz.decide.forward import METADATA_KEYS, PUBLIC_METADATA_KEYS
from authz.envoy.http_service import API_ID_HEADER, ENVIRONMENT_HEADER, UNAVAILABLE_STATUS
from authz.ops.envoy_clusters import authz_retry_policy
from authz.ops.envoy_proto import (
    AUTHZ_CLUSTER,
    AUTHZ_HTTP_CLUSTER,
    EXT_AUTHZ,
    HEADER_MUTATION,
    LOCAL_RATELIMIT,
    METADATA_NAMESPACE,
    ROUTER,
    pack,
    seconds,
)
from authz.ops.envoy_routes import VirtualHostPlan, virtual_host

DEMO_TIER_LIMITS: Mapping[str, int] = MappingProxyType({"Bronze": 60, "Silver": 600, "Gold": 6000})
"""Default local rate limits: requests per minute for all applications of each application tier, per Envoy."""

HTTP_REQUEST_HEADERS = ("authorization", "x-request-id", API_ID_HEADER, ENVIRONMENT_HEADER)
"""HTTP mode: the client request headers sent to authz (``ExtAuthz.allowed_headers``); Envoy always adds
``Host``, the method and the path. The two route headers are set by Envoy itself (see
:mod:`authz.ops.envoy_routes`)."""

HTTP_CLIENT_HEADERS = ("content-type", "www-authenticate", "retry-after")
"""HTTP mode: the headers of a denial Envoy forwards to the client (``authz.envoy.render.deny_parts``)."""


@dataclass(frozen=True)
class Listening:
    """What the HTTP connection manager needs besides the routes.

    Attributes:
        http_mode: ext_authz ``http_service`` to :data:`AUTHZ_HTTP_CLUSTER` instead of ``grpc_service``.
        timeout: seconds Envoy waits for authz (``grpc_service.timeout`` / ``server_uri.timeout``).
        upstream_headers: HTTP mode: authz's identity header names Envoy copies onto the upstream request.
        tier_limits: requests per minute per application tier; empty: no rate limit filter or descriptor.
        access_log: the JSON access log on stdout.
        failure_mode_allow: let requests through when authz fails: never in production (tests of fail-open).
    """

    http_mode: bool
    timeout: float
    upstream_headers: tuple[str, ...] = ()
    tier_limits: Mapping[str, int] = field(default_factory=lambda: dict(DEMO_TIER_LIMITS))
    access_log: bool = True
    failure_mode_allow: bool = False


def access_log_format() -> dict[str, str]:
    """The JSON access log fields: ``method``, ``path``, ``status``, ``authority``, ``request_id``, ``duration_ms``,
    ``response_flags``, ``upstream_host``, and ``authz_<key>`` for each dynamic metadata key of authz
    (``authz.decide.forward.METADATA_KEYS`` then ``auth``), read from the ``envoy.filters.http.ext_authz``
    namespace in both modes."""
    fmt = {
        "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "status": "%RESPONSE_CODE%",
        "authority": "%REQ(:AUTHORITY)%", "request_id": "%REQ(X-REQUEST-ID)%", "duration_ms": "%DURATION%",
        "response_flags": "%RESPONSE_FLAGS%", "upstream_host": "%UPSTREAM_HOST%",
    }
    for name in _metadata_keys():
        fmt[f"authz_{name}"] = f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:{name})%"
    return fmt


def _metadata_keys() -> tuple[str, ...]:
    return tuple(dict.fromkeys((*METADATA_KEYS, *PUBLIC_METADATA_KEYS)))


def _exact(names: Sequence[str]) -> ListStringMatcher:
    return ListStringMatcher(patterns=[StringMatcher(exact=name) for name in names])


def ext_authz(listening: Listening) -> ExtAuthz:
    """The ext_authz filter's config (``envoy.extensions.filters.http.ext_authz.v3.ExtAuthz``).

    gRPC mode: ``grpc_service`` to :data:`AUTHZ_CLUSTER` with the retry policy of
    :func:`authz.ops.envoy_clusters.authz_retry_policy`. HTTP mode: ``http_service`` to
    :data:`AUTHZ_HTTP_CLUSTER` (no ``path_prefix``: authz sees the client's path) with the same retries,
    ``allowed_headers`` :data:`HTTP_REQUEST_HEADERS`, and ``authorization_response`` copying the identity headers
    to the upstream, the denial headers to the client and each metadata key's response header into the
    dynamic metadata. authz strips ``authorization`` with ``x-envoy-auth-headers-to-remove``, which Envoy
    applies itself.
    """
    config = ExtAuthz(
        transport_api_version=ApiVersion.V3,
        failure_mode_allow=listening.failure_mode_allow,
        status_on_error=HttpStatus(code=StatusCode.ServiceUnavailable),
    )
    if listening.http_mode:
        config.http_service = HttpService(
            server_uri=HttpUri(uri=f"http://{AUTHZ_HTTP_CLUSTER}", cluster=AUTHZ_HTTP_CLUSTER,
                               timeout=seconds(listening.timeout)),
            authorization_response=AuthorizationResponse(
                allowed_upstream_headers=_exact(listening.upstream_headers),
                allowed_client_headers=_exact(HTTP_CLIENT_HEADERS),
                dynamic_metadata_from_headers=_exact(_metadata_keys()),
            ),
            retry_policy=authz_retry_policy(listening.timeout),
        )
        config.allowed_headers = _exact(HTTP_REQUEST_HEADERS)
    else:
        config.grpc_service = GrpcService(
            envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=AUTHZ_CLUSTER), timeout=seconds(listening.timeout),
            retry_policy=authz_retry_policy(listening.timeout))
    return config


def _always() -> RuntimeFractionalPercent:
    return RuntimeFractionalPercent(
        default_value=FractionalPercent(numerator=100, denominator=FractionalPercentDenominatorType.HUNDRED),
        runtime_key="local_rate_limit_on")


RATE_LIMIT_DEFAULT_TIER = "none"
"""Descriptor value used when a request carries no ``application_tier`` metadata (denied or public calls)."""


def tier_descriptor() -> RateLimit:
    """The descriptor ``(application_tier, <metadata value>)`` of every request: Envoy's ``metadata`` action on
    the ext_authz dynamic metadata (``source: DYNAMIC``), :data:`RATE_LIMIT_DEFAULT_TIER` when there is none."""
    return RateLimit(actions=[RateLimitAction(metadata=RateLimitActionMetaData(
        descriptor_key="application_tier",
        metadata_key=MetadataKey(key=METADATA_NAMESPACE, path=[MetadataKeyPathSegment(key="application_tier")]),
        default_value=RATE_LIMIT_DEFAULT_TIER,
    ))])


def local_rate_limit(tier_limits: Mapping[str, int]) -> LocalRateLimit:
    """The local rate limit filter: a generous global bucket (100000/s), and one bucket per application tier
    matched by the filter's own :func:`tier_descriptor` (``rate_limits``, evaluated after ext_authz set the
    metadata); a tier not listed is limited by the global bucket only.

    Raises:
        ValueError: an empty tier name or a limit that is not a positive number of requests per minute.
    """
    for tier, limit in tier_limits.items():
        if not tier or int(limit) <= 0:
            raise ValueError(f"tier limit must be a positive number of requests per minute, got {tier!r}: {limit!r}")
    return LocalRateLimit(
        stat_prefix="authz_tiers",
        token_bucket=TokenBucket(max_tokens=100_000, tokens_per_fill=100_000, fill_interval=seconds(1)),
        filter_enabled=_always(),
        filter_enforced=_always(),
        rate_limits=[tier_descriptor()],
        descriptors=[
            LocalRateLimitDescriptor(
                entries=[RateLimitDescriptorEntry(key="application_tier", value=tier)],
                token_bucket=TokenBucket(max_tokens=int(limit), tokens_per_fill=int(limit), fill_interval=seconds(60)))
            for tier, limit in tier_limits.items()
        ],
    )


def unavailable_reply() -> LocalReplyConfig:
    """HTTP mode: the client gets 503 for authz's unavailable deny, which authz sends as
    :data:`authz.envoy.http_service.UNAVAILABLE_STATUS` (a 5xx would be an authz failure to Envoy's ext_authz
    filter). Only a local reply of the ext_authz filter (response flag ``UAEX``) with that status is mapped; its
    body and headers (the JSON body, ``retry-after``) are kept."""
    return LocalReplyConfig(mappers=[ResponseMapper(
        filter=AccessLogFilter(and_filter=AndFilter(filters=[
            AccessLogFilter(status_code_filter=StatusCodeFilter(comparison=ComparisonFilter(
                op=ComparisonFilterOp.EQ,
                value=RuntimeUInt32(default_value=UNAVAILABLE_STATUS, runtime_key="authz.unavailable_status")))),
            AccessLogFilter(response_flag_filter=ResponseFlagFilter(flags=["UAEX"])),
        ])),
        status_code=503,
    )])


def http_connection_manager(virtual_hosts: Sequence[VirtualHostPlan], listening: Listening) -> HttpConnectionManager:
    """The HTTP connection manager of the ingress listener.

    Filters in order: header_mutation (HTTP mode: sets the route headers before the check), ext_authz,
    local_ratelimit (when there are tier limits), router. ``strip_any_host_port`` lets virtual host domains
    match the ``Host`` without its port. HTTP mode: :func:`unavailable_reply`.
    """
    filters = []
    if listening.http_mode:
        filters.append(HttpFilter(name=HEADER_MUTATION, typed_config=pack(HeaderMutation())))
    filters.append(HttpFilter(name=EXT_AUTHZ, typed_config=pack(ext_authz(listening))))
    if listening.tier_limits:
        filters.append(HttpFilter(name=LOCAL_RATELIMIT, typed_config=pack(local_rate_limit(listening.tier_limits))))
    filters.append(HttpFilter(name=ROUTER, typed_config=pack(Router())))
    logs = []
    if listening.access_log:
        fmt = SubstitutionFormatString(json_format=Struct.from_dict(access_log_format()))
        logs.append(AccessLog(name="envoy.access_loggers.stdout", typed_config=pack(StdoutAccessLog(log_format=fmt))))
    return HttpConnectionManager(
        stat_prefix="ingress",
        local_reply_config=unavailable_reply() if listening.http_mode else None,
        codec_type=HttpConnectionManagerCodecType.AUTO,
        normalize_path=True,
        merge_slashes=True,
        path_with_escaped_slashes_action=HttpConnectionManagerPathWithEscapedSlashesAction.REJECT_REQUEST,
        strip_any_host_port=True,
        access_log=logs,
        route_config=RouteConfiguration(name="local_route", virtual_hosts=[
            virtual_host(v, http_mode=listening.http_mode) for v in virtual_hosts]),
        http_filters=filters,
    )
