"""``authz envoy-config``: the Envoy v3 bootstrap that goes with an authz config, for each deployment target.

:func:`build_bootstrap` turns the validated :class:`authz.config.Settings` and :class:`EnvoyOptions` into an
``envoy.config.bootstrap.v3.Bootstrap`` (envoy-data-plane's typed dataclasses); :func:`render_yaml` writes it
as YAML (proto3 JSON field names, snake_case) under a header naming the command that made it.

What comes from the authz config:

* the routes: one per API context (``apis[].context``), naming the API to authz (``api_id``), forwarding to
  ``apis[].upstream``; one per sandbox host and API (``apis[].sandbox.hosts``) with ``environment: sandbox``;
  API-specific virtual hosts for ``apis[].hosts``; a catch-all ``/`` route last (authz matches by host + path);
* the authz cluster: ``server.listen`` (gRPC mode) or ``server.http_listen`` (HTTP mode), one endpoint per
  worker (``server.workers``) for the ``local`` target, authz's DNS name for ``compose`` (the service ``authz``,
  so ``docker compose up --scale authz=3`` is followed) and ``kubernetes`` (the headless Service ``authz``);
* the ext_authz timeout: ``server.decision_timeout`` + :data:`TIMEOUT_MARGIN`;
* HTTP mode: the identity headers Envoy copies to the upstream (``headers``, ``backend_jwt.header``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.overload.v3 import OverloadManager, ResourceMonitor
from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections.v3 import (
    DownstreamConnectionsConfig,
)

from authz.config import ApiSettings, Settings
from authz.decide.policy import SANDBOX
from authz.ops.envoy_clusters import authz_cluster, cluster_name, upstream_cluster
from authz.ops.envoy_filters import DEMO_TIER_LIMITS, Listening, http_connection_manager
from authz.ops.envoy_proto import (
    AUTHZ_CLUSTER,
    AUTHZ_HTTP_CLUSTER,
    EXT_AUTHZ,
    HostPort,
    address,
    pack,
    to_dict,
)
from authz.ops.envoy_routes import RoutePlan, VirtualHostPlan
from authz.ops.supervisor import default_workers

TARGETS = ("local", "compose", "kubernetes")
"""Deployment targets: ``local`` (processes on this host), ``compose`` (docker-compose.yml), ``kubernetes``
(deploy/kubernetes/)."""
MODES = ("grpc", "http")
"""ext_authz modes: ``grpc`` (``grpc_service``, authz's ``server.listen``) or ``http`` (``http_service``, authz's
``server.http_listen``)."""
AUTHZ_SERVICE = "authz"
"""authz's DNS name in the compose and kubernetes targets (compose service, headless Service)."""
TIMEOUT_MARGIN = 0.25
"""Seconds the ext_authz timeout exceeds ``server.decision_timeout``, so authz's own 503 arrives first."""

_DEFAULTS: Mapping[str, tuple[str, str]] = {
    "local": ("127.0.0.1:8080", "127.0.0.1:9901"),
    "compose": ("0.0.0.0:8080", "0.0.0.0:9901"),
    "kubernetes": ("0.0.0.0:8080", "0.0.0.0:9901"),
}


class EnvoyConfigError(ValueError):
    """The authz config or the options cannot make an Envoy config; the message names the field and why."""


@dataclass(frozen=True)
class EnvoyOptions:
    """How to build the bootstrap besides the authz config.

    Attributes:
        target: one of :data:`TARGETS`.
        authz_mode: one of :data:`MODES`.
        listen: Envoy's HTTP listener; None: the target's (127.0.0.1:8080 local, 0.0.0.0:8080 otherwise).
        admin: Envoy's admin listener; None: the target's (port 9901).
        authz: authz's endpoints (the check port of the mode); empty: from the config and the target.
        default_upstream: ``http://host:port`` for APIs without ``upstream`` and for the catch-all route; None:
            those routes answer 404 after the check.
        tier_limits: requests per minute per application tier; empty: no rate limiting.
        access_log: the JSON access log with authz's dynamic metadata.
        routed_apis: the API IDs that get routes of their own; None: every API. The others are reached through
            the catch-all route, where authz matches them by host + path.
        failure_mode_allow: fail open when authz fails. Never in production: tests of fail-open Envoys only.
        max_connections: Envoy's global downstream connection limit.
    """

    target: str = "local"
    authz_mode: str = "grpc"
    listen: HostPort | None = None
    admin: HostPort | None = None
    authz: tuple[HostPort, ...] = ()
    default_upstream: str | None = None
    tier_limits: Mapping[str, int] = field(default_factory=lambda: dict(DEMO_TIER_LIMITS))
    access_log: bool = True
    routed_apis: Collection[str] | None = None
    failure_mode_allow: bool = False
    max_connections: int = 10_000


def _worker_ports(base: HostPort, workers: int) -> list[HostPort]:
    host = "127.0.0.1" if base.host in ("0.0.0.0", "") else ("::1" if base.host == "::" else base.host)
    return [HostPort(host, base.port + i) for i in range(workers)]


def authz_endpoints(settings: Settings, options: EnvoyOptions) -> list[HostPort]:
    """The endpoints of authz's cluster.

    ``local``: one per worker (``server.workers``, 0 = one per CPU of this host) on consecutive ports from
    ``server.listen`` (gRPC) or ``server.http_listen`` (HTTP), a wildcard host replaced by loopback.
    ``compose``/``kubernetes``: :data:`AUTHZ_SERVICE` on that port (one worker per container or pod). Given
    endpoints (``options.authz``) replace these.

    Raises:
        EnvoyConfigError: HTTP mode without ``server.http_listen`` (and no ``options.authz``).
    """
    if options.authz:
        return list(options.authz)
    http_mode = options.authz_mode == "http"
    if http_mode and settings.server.http_listen is None:
        raise EnvoyConfigError("server.http_listen: required by --authz-mode http (authz's HTTP ext_authz listener)")
    base = HostPort.parse(settings.server.http_listen if http_mode else settings.server.listen)
    if options.target == "local":
        return _worker_ports(base, settings.server.workers or default_workers())
    return [HostPort(AUTHZ_SERVICE, base.port)]


def _sort(routes: list[RoutePlan], specific: set[int]) -> tuple[RoutePlan, ...]:
    """Longest context first; for one context, an API of this host before an API of any host."""
    keyed = sorted(enumerate(routes), key=lambda item: (-item[1].prefix.rstrip("/").count("/"),
                                                         0 if item[0] in specific else 1, item[0]))
    return tuple(r for _, r in keyed)


def plan_virtual_hosts(apis: list[ApiSettings], default_cluster: str | None) -> list[VirtualHostPlan]:
    """The virtual hosts and routes, in Envoy's match order.

    One virtual host per sandbox host (the sandbox routes of the APIs listing it, and a catch-all, all with
    ``environment: sandbox``), one per production host named by an API's ``hosts`` (that API's routes and those of
    the APIs served on any host), and ``*`` (the APIs served on any host). Each ends with a catch-all ``/``
    route without ``api_id`` (unless an API's context is ``/``) forwarding to ``default_cluster``.
    """
    def upstream(url: str | None) -> str | None:
        return cluster_name(url) if url else default_cluster

    def hosted(routes: list[RoutePlan], specific: set[int], environment: str | None) -> tuple[RoutePlan, ...]:
        if not any(r.prefix == "/" for r in routes):
            routes = [*routes, RoutePlan("/", None, environment, default_cluster)]
        return _sort(routes, specific)

    vhosts = []
    sandbox_hosts = list(dict.fromkeys(h for api in apis if api.sandbox for h in api.sandbox.hosts))
    for host in sandbox_hosts:
        routes = [RoutePlan(api.context, api.id, SANDBOX, upstream(api.sandbox.upstream or api.upstream))
                  for api in apis if api.sandbox and host in api.sandbox.hosts]
        vhosts.append(VirtualHostPlan(f"sandbox_{host}", (host,), hosted(routes, set(), SANDBOX)))
    anywhere = [api for api in apis if not api.hosts]
    for host in dict.fromkeys(h for api in apis for h in api.hosts):
        served = [api for api in apis if host in api.hosts] + anywhere
        routes = [RoutePlan(api.context, api.id, None, upstream(api.upstream)) for api in served]
        specific = {i for i, api in enumerate(served) if api.hosts}
        vhosts.append(VirtualHostPlan(f"host_{host}", (host,), hosted(routes, specific, None)))
    routes = [RoutePlan(api.context, api.id, None, upstream(api.upstream)) for api in anywhere]
    vhosts.append(VirtualHostPlan("apis", ("*",), hosted(routes, set(), None)))
    return vhosts


def upstream_headers(settings: Settings) -> tuple[str, ...]:
    """HTTP mode: the headers authz sets on an allow that Envoy copies to the upstream: the configured identity
    headers (``headers``) and the backend JWT header (``backend_jwt.header``)."""
    names = list(settings.headers.identity_headers())
    if settings.backend_jwt is not None:
        names.append(settings.backend_jwt.header)
    return tuple(names)


def build_bootstrap(settings: Settings, options: EnvoyOptions) -> Bootstrap:
    """The Envoy bootstrap for ``settings`` and ``options`` (see the module docstring).

    Raises:
        EnvoyConfigError: an unknown target or mode, HTTP mode without ``server.http_listen``, an unknown API in
            ``routed_apis``, a non-positive tier limit.
    """
    if options.target not in TARGETS:
        raise EnvoyConfigError(f"target: must be one of {', '.join(TARGETS)}, got {options.target!r}")
    if options.authz_mode not in MODES:
        raise EnvoyConfigError(f"authz mode: must be one of {', '.join(MODES)}, got {options.authz_mode!r}")
    known = {api.id for api in settings.apis}
    unknown = sorted(set(options.routed_apis or ()) - known)
    if unknown:
        raise EnvoyConfigError(f"routed APIs: unknown API id(s) {', '.join(unknown)}")
    apis = [a for a in settings.apis if options.routed_apis is None or a.id in options.routed_apis]
    http_mode = options.authz_mode == "http"
    default_cluster = cluster_name(options.default_upstream) if options.default_upstream else None
    urls = [options.default_upstream] if options.default_upstream else []
    for api in apis:
        urls += [u for u in (api.upstream, api.sandbox.upstream if api.sandbox else None) if u]
    listening = Listening(
        http_mode=http_mode, timeout=settings.server.decision_timeout + TIMEOUT_MARGIN,
        upstream_headers=upstream_headers(settings), tier_limits=dict(options.tier_limits),
        access_log=options.access_log, failure_mode_allow=options.failure_mode_allow)
    try:
        hcm = http_connection_manager(plan_virtual_hosts(apis, default_cluster), listening)
    except ValueError as exc:
        raise EnvoyConfigError(str(exc)) from None
    listen_default, admin_default = _DEFAULTS[options.target]
    clusters = [authz_cluster(AUTHZ_HTTP_CLUSTER if http_mode else AUTHZ_CLUSTER, authz_endpoints(settings, options),
                              grpc=not http_mode)]
    clusters += [upstream_cluster(cluster_name(url), url) for url in dict.fromkeys(urls)]
    return Bootstrap(
        admin=Admin(address=address(options.admin or HostPort.parse(admin_default))),
        overload_manager=OverloadManager(resource_monitors=[ResourceMonitor(
            name="envoy.resource_monitors.global_downstream_max_connections",
            typed_config=pack(DownstreamConnectionsConfig(max_active_downstream_connections=options.max_connections)),
        )]),
        static_resources=BootstrapStaticResources(
            listeners=[Listener(
                name="ingress",
                address=address(options.listen or HostPort.parse(listen_default)),
                filter_chains=[FilterChain(filters=[Filter(
                    name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm))])],
            )],
            clusters=clusters,
        ),
    )


def bootstrap_dict(bootstrap: Bootstrap) -> dict[str, Any]:
    """The bootstrap as plain dicts (proto3 JSON with proto field names, :func:`authz.ops.envoy_proto.to_dict`).

    ``failure_mode_allow`` is written even when false (proto3 JSON leaves false out), so that a reader of the
    file sees that the ext_authz filter fails closed.
    """
    out = to_dict(bootstrap)
    for listener in out.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                for http_filter in network_filter.get("typed_config", {}).get("http_filters", []):
                    if http_filter.get("name") == EXT_AUTHZ:
                        config = http_filter["typed_config"]
                        config["failure_mode_allow"] = bool(config.get("failure_mode_allow", False))
    return out


def render_yaml(bootstrap: Bootstrap, command: str) -> str:
    """The bootstrap as YAML, under a header comment naming the ``command`` that regenerates it."""
    header = f"# Generated by `{command}`; do not edit by hand.\n"
    return header + yaml.safe_dump(bootstrap_dict(bootstrap), sort_keys=False, default_flow_style=False)
