"""The routes of ``authz envoy-config``: one per API context and environment, each naming its API to authz.

gRPC mode: a route names its API in the ext_authz per-route ``check_settings.context_extensions`` (``api_id``,
and ``environment: sandbox`` on sandbox routes). HTTP mode, where no context extension travels: the
header_mutation filter's per-route config first removes any client-sent ``x-authz-api-id`` and
``x-authz-environment`` and then sets them for the route (the catch-all only removes them). In both modes the
route removes both before the upstream (``request_headers_to_remove``), so the upstream never sees them, not even
a client's copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy_data_plane.envoy.config.common.mutation_rules.v3 import HeaderMutation as HeaderMutationRule
from envoy_data_plane.envoy.config.core.v3 import (
    DataSource,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
)
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    Route,
    RouteAction,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import CheckSettings, ExtAuthzPerRoute
from envoy_data_plane.envoy.extensions.filters.http.header_mutation.v3 import (
    HeaderMutationPerRoute,
    Mutations,
)

from authz.envoy.http_service import API_ID_HEADER, ENVIRONMENT_HEADER
from authz.ops.envoy_proto import EXT_AUTHZ, HEADER_MUTATION, pack


@dataclass(frozen=True)
class RoutePlan:
    """One route.

    Attributes:
        prefix: the API's context path (matched segment by segment, ``path_separated_prefix``); ``/`` matches
            every path.
        api_id: the API named to authz; None: authz matches the API by host and path.
        environment: ``"sandbox"`` on sandbox routes, else None.
        cluster: the upstream cluster; None: the route answers 404 after the check.
    """

    prefix: str
    api_id: str | None
    environment: str | None
    cluster: str | None


@dataclass(frozen=True)
class VirtualHostPlan:
    """One virtual host: its name, its ``domains`` (``Host`` values without port, or ``*``) and its routes in
    match order."""

    name: str
    domains: tuple[str, ...]
    routes: tuple[RoutePlan, ...]


def _header_mutations(plan: RoutePlan) -> HeaderMutationPerRoute:
    """HTTP mode: remove the client's copies of both route headers, then set those of this route."""
    rules = [HeaderMutationRule(remove=API_ID_HEADER), HeaderMutationRule(remove=ENVIRONMENT_HEADER)]
    for name, value in ((API_ID_HEADER, plan.api_id), (ENVIRONMENT_HEADER, plan.environment)):
        if value is not None:
            rules.append(HeaderMutationRule(append=HeaderValueOption(
                header=HeaderValue(key=name, value=value),
                append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD)))
    return HeaderMutationPerRoute(mutations=Mutations(request_mutations=rules))


def route(plan: RoutePlan, *, http_mode: bool) -> Route:
    """The ``envoy.config.route.v3.Route`` of ``plan``.

    Args:
        plan: the route.
        http_mode: name the API with request headers (HTTP ext_authz mode) instead of context extensions.
    Raises:
        ValueError: a prefix not starting with ``/``.
    """
    if not plan.prefix.startswith("/"):
        raise ValueError(f"route prefix must start with '/', got {plan.prefix!r}")
    if plan.prefix == "/":
        match = RouteMatch(prefix="/")
    else:
        match = RouteMatch(path_separated_prefix=plan.prefix.rstrip("/"))
    out = Route(match=match)
    if plan.cluster is None:
        out.direct_response = DirectResponseAction(status=404, body=DataSource(inline_string="no upstream"))
    else:
        out.route = RouteAction(cluster=plan.cluster)
    out.request_headers_to_remove = [API_ID_HEADER, ENVIRONMENT_HEADER]
    if http_mode:
        out.typed_per_filter_config = {HEADER_MUTATION: pack(_header_mutations(plan))}
    elif plan.api_id is not None or plan.environment is not None:
        context = {"api_id": plan.api_id} if plan.api_id is not None else {}
        if plan.environment is not None:
            context["environment"] = plan.environment
        out.typed_per_filter_config = {
            EXT_AUTHZ: pack(ExtAuthzPerRoute(check_settings=CheckSettings(context_extensions=context)))}
    return out


def virtual_host(plan: VirtualHostPlan, *, http_mode: bool) -> VirtualHost:
    """The ``envoy.config.route.v3.VirtualHost`` of ``plan`` (see :func:`route`)."""
    return VirtualHost(name=plan.name, domains=list(plan.domains),
                       routes=[route(r, http_mode=http_mode) for r in plan.routes])
