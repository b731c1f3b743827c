"""The clusters of ``authz envoy-config``: authz's (gRPC or HTTP ext_authz) and one per upstream URL.

authz's cluster is built for rollouts without failed requests: active health checks (gRPC mode:
``grpc.health.v1.Health``; HTTP mode: the check listener's health probe, ``GET /healthz`` with
``x-authz-health-check``; both report what a stopping authz turns NOT_SERVING), outlier detection, and the retry
policy of
:func:`authz_retry_policy` (a refused or reset call is retried once on another endpoint). Endpoints given as IP
addresses make a STATIC cluster; names make a STRICT_DNS one, which follows every address the name resolves to
(``docker compose --scale authz=3``, a Kubernetes headless Service).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    Cluster,
    ClusterDiscoveryType,
    ClusterDnsLookupFamily,
    ClusterLbPolicy,
    OutlierDetection,
)
from envoy_data_plane.envoy.config.core.v3 import (
    BackoffStrategy,
    DataSource,
    HeaderValue,
    HeaderValueOption,
    HealthCheck,
    HealthCheckGrpcHealthCheck,
    HealthCheckHttpHealthCheck,
    Http1ProtocolOptions,
    Http2ProtocolOptions,
    RetryPolicy,
    RetryPolicyRetryHostPredicate,
    TransportSocket,
)
from envoy_data_plane.envoy.config.core.v3 import HttpProtocolOptions as CommonHttpProtocolOptions
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3 import PreviousHostsPredicate
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    UpstreamTlsContext,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.envoy.type.v3 import Int64Range

from authz.envoy.http_service import HEALTH_HEADER, HEALTH_PATH, HEALTHY_STATUS, LIMITS
from authz.ops.envoy_proto import HostPort, address, pack, seconds

CONNECT_TIMEOUT = 0.25
"""Seconds to open a connection to an authz endpoint or an upstream."""
HEALTH_CHECK_INTERVAL = 2.0
"""Seconds between two health checks of one authz endpoint, with or without traffic (also the
``no_traffic_interval``: Envoy's default of 60 s applies to a cluster that only ext_authz calls, measured with
Envoy 1.40); with :data:`UNHEALTHY_THRESHOLD` a stopping authz (NOT_SERVING) leaves the rotation within about
4 s."""
UNHEALTHY_THRESHOLD = 2
HTTP_IDLE_TIMEOUT = LIMITS.idle_timeout - 60
"""HTTP mode: seconds an idle connection to authz stays in Envoy's pool (240): below the 300 s after which authz's
HTTP listener closes an idle connection (``authz.http1.Limits.idle_timeout``), so Envoy never sends a check on a
connection authz is closing (Envoy's default is one hour)."""
RETRY_ON = "connect-failure,refused-stream,reset,unavailable"
"""When Envoy retries a call to authz (``x-envoy-retry-on`` / ``x-envoy-retry-grpc-on`` conditions): the call never
reached a working authz. A decision, even a 503 deny, is an answer and is never retried."""

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
"""The CA certificates an ``https`` upstream's certificate is verified against (Debian, Ubuntu and the official
Envoy image keep them there)."""

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def authz_retry_policy(timeout: float) -> RetryPolicy:
    """``envoy.config.core.v3.RetryPolicy`` of the calls to authz: up to 2 retries on :data:`RETRY_ON`, each on a host
    not tried yet (``envoy.retry_host_predicates.previous_hosts``), all within the ext_authz ``timeout``.

    Args:
        timeout: the ext_authz timeout in seconds. It is also the backoff's ``max_interval``: Envoy turns a core
            ``RetryPolicy`` into a route retry policy whose ``per_try_timeout`` is ``max_interval``
            (``Http::Utility::convertCoreToRouteRetryPolicy``), so a shorter one would cut every call to authz
            short and retry it (measured: 50 ms reset a 200 ms decision three times, then the filter's error).
            The backoff starts at 10 ms and grows only as retries happen.
    """
    return RetryPolicy(
        retry_on=RETRY_ON,
        num_retries=2,
        retry_back_off=BackoffStrategy(base_interval=seconds(0.01), max_interval=seconds(max(timeout, 0.01))),
        retry_host_predicate=[RetryPolicyRetryHostPredicate(
            name="envoy.retry_host_predicates.previous_hosts", typed_config=pack(PreviousHostsPredicate()))],
        host_selection_retry_max_attempts=5,
    )


def _discovery(addresses: Sequence[HostPort]) -> ClusterDiscoveryType:
    return ClusterDiscoveryType.STATIC if all(a.is_ip for a in addresses) else ClusterDiscoveryType.STRICT_DNS


def authz_cluster(name: str, endpoints: Sequence[HostPort], *, grpc: bool) -> Cluster:
    """authz's cluster.

    Args:
        name: the cluster name (:data:`authz.ops.envoy_proto.AUTHZ_CLUSTER` or ``AUTHZ_HTTP_CLUSTER``).
        endpoints: at least one.
        grpc: HTTP/2 to gRPC servers, health checked with ``grpc.health.v1`` (``grpc_health_check``, which
            follows authz's SERVING / NOT_SERVING); False: HTTP/1.1 to HTTP ext_authz listeners, health checked
            with the listener's probe (``http_health_check``: ``GET /healthz`` with ``x-authz-health-check``,
            healthy on 204, the same state as ``grpc.health.v1``; :mod:`authz.envoy.http_service`) and idle
            connections closed after :data:`HTTP_IDLE_TIMEOUT`.
    Returns:
        A ROUND_ROBIN cluster with active health checks, outlier detection (5 consecutive 5xx or 3 gateway
        failures eject a host for 10 s, at most half of them) and circuit-breaker thresholds high enough that
        retries are never refused for lack of budget.
    Raises:
        ValueError: no endpoints.
    """
    if not endpoints:
        raise ValueError("authz's cluster needs at least one endpoint")
    lb_endpoints = [LbEndpoint(endpoint=Endpoint(address=address(where))) for where in endpoints]
    cluster = Cluster(
        name=name,
        type=_discovery(endpoints),
        connect_timeout=seconds(CONNECT_TIMEOUT),
        lb_policy=ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=ClusterLoadAssignment(cluster_name=name, endpoints=[LocalityLbEndpoints(lb_endpoints=lb_endpoints)]),
        health_checks=[HealthCheck(
            timeout=seconds(1.0),
            interval=seconds(HEALTH_CHECK_INTERVAL),
            no_traffic_interval=seconds(HEALTH_CHECK_INTERVAL),
            unhealthy_threshold=UNHEALTHY_THRESHOLD,
            healthy_threshold=1,
            grpc_health_check=HealthCheckGrpcHealthCheck() if grpc else None,
            http_health_check=None if grpc else _http_health_check(),
        )],
        outlier_detection=OutlierDetection(
            consecutive_5xx=5,
            consecutive_gateway_failure=3,
            interval=seconds(5.0),
            base_ejection_time=seconds(10.0),
            max_ejection_percent=50,
        ),
        circuit_breakers=CircuitBreakers(thresholds=[CircuitBreakersThresholds(
            max_connections=10_000, max_pending_requests=10_000, max_requests=100_000, max_retries=1_000)]),
    )
    if not all(where.is_ip for where in endpoints):
        cluster.dns_lookup_family = ClusterDnsLookupFamily.V4_PREFERRED  # names are re-resolved every 5 s
    if grpc:
        cluster.typed_extension_protocol_options = {_HTTP_OPTIONS: pack(HttpProtocolOptions(
            explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(http2_protocol_options=Http2ProtocolOptions())))}
    else:
        cluster.typed_extension_protocol_options = {_HTTP_OPTIONS: pack(HttpProtocolOptions(
            common_http_protocol_options=CommonHttpProtocolOptions(idle_timeout=seconds(HTTP_IDLE_TIMEOUT)),
            explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(http_protocol_options=Http1ProtocolOptions())))}
    return cluster


def _http_health_check() -> HealthCheckHttpHealthCheck:
    """The HTTP mode's probe of authz's check listener (:func:`authz.envoy.http_service.is_health_probe`)."""
    return HealthCheckHttpHealthCheck(
        path=HEALTH_PATH,
        request_headers_to_add=[HeaderValueOption(header=HeaderValue(key=HEALTH_HEADER, value="envoy"))],
        expected_statuses=[Int64Range(start=HEALTHY_STATUS, end=HEALTHY_STATUS + 1)],
    )


def cluster_name(url: str) -> str:
    """The name of the cluster of an upstream URL: ``upstream_<host>_<port>`` (``https`` adds ``_tls``), every
    character other than a letter, digit or ``_`` replaced by ``_``."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    suffix = "_tls" if parts.scheme == "https" else ""
    return "upstream_" + re.sub(r"[^A-Za-z0-9_]", "_", f"{parts.hostname}_{port}") + suffix


def upstream_cluster(name: str, url: str) -> Cluster:
    """The cluster of an API's upstream.

    Args:
        name: the cluster name (:func:`cluster_name`).
        url: ``http://host[:port]`` or ``https://host[:port]`` (checked by the config: ``apis[].upstream``).
    Returns:
        A ROUND_ROBIN cluster, STATIC for an IP address, STRICT_DNS for a name. An ``https`` upstream gets
        ``envoy.transport_sockets.tls`` with the host as SNI, its certificate verified against the system's CA
        certificates (:data:`CA_BUNDLE`) and its subject alternative names (the host as a DNS or IP SAN).
    """
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    where = HostPort((parts.hostname or "").strip("[]"), parts.port or (443 if tls else 80))
    cluster = Cluster(
        name=name,
        type=_discovery([where]),
        connect_timeout=seconds(CONNECT_TIMEOUT),
        lb_policy=ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[LocalityLbEndpoints(lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=address(where)))])]),
    )
    if not where.is_ip:
        cluster.dns_lookup_family = ClusterDnsLookupFamily.V4_PREFERRED
    if tls:
        san = SubjectAltNameMatcher(
            san_type=SubjectAltNameMatcherSanType.IP_ADDRESS if where.is_ip else SubjectAltNameMatcherSanType.DNS,
            matcher=StringMatcher(exact=where.host))
        context = UpstreamTlsContext(
            sni="" if where.is_ip else where.host,
            common_tls_context=CommonTlsContext(validation_context=CertificateValidationContext(
                trusted_ca=DataSource(filename=CA_BUNDLE), match_typed_subject_alt_names=[san])))
        cluster.transport_socket = TransportSocket(name="envoy.transport_sockets.tls", typed_config=pack(context))
    return cluster
