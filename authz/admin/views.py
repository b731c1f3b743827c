"""The developer views of :mod:`authz.registry.developer` as ``authz.admin.v1`` messages (``DescribeApplication``,
``ListApis``, ``GetApi``)."""

from __future__ import annotations

from authz.admin.v1 import admin_pb2 as pb
from authz.keys.connection import ConnectionData
from authz.keys.token_requests import TokenRequest
from authz.registry.developer import ApiView, ApplicationDetails, ClientDetails, GatewayCall


def api_message(view: ApiView) -> pb.Api:
    """An :class:`ApiView` as ``Api`` (``subscription`` set only when the view has one)."""
    message = pb.Api(
        id=view.id, name=view.name, context=view.context, version=view.version, hosts=view.hosts,
        resources=[pb.Resource(path=r.path, methods=r.methods, scopes=r.scopes, scope_match=r.scope_match,
                               public=r.public) for r in view.resources],
        public=view.public, key_managers=view.key_managers, scopes=view.scopes,
    )
    if view.subscription is not None:
        s = view.subscription
        message.subscription.CopyFrom(pb.Subscription(application_id=s.application_id, api_id=s.api_id,
                                                      status=s.status, tier=s.tier, created_at=s.created_at))
    return message


def connection_message(c: ConnectionData) -> pb.KeyManagerConnection:
    """:class:`ConnectionData` as ``KeyManagerConnection`` (unknown URLs are empty strings)."""
    return pb.KeyManagerConnection(
        key_manager=c.key_manager, issuer=c.issuer, token_endpoint=c.token_endpoint or "", jwks_uri=c.jwks_uri or "",
        grant_types_supported=c.grant_types_supported, scopes_supported=c.scopes_supported,
        token_endpoint_auth_methods_supported=c.token_endpoint_auth_methods_supported,
        metadata_url=c.metadata_url or "", source=c.source, problems=c.problems,
    )


def token_request_message(r: TokenRequest) -> pb.TokenRequest:
    """A :class:`TokenRequest` as ``TokenRequest`` (parameters in order)."""
    return pb.TokenRequest(
        grant_type=r.grant_type, token_endpoint=r.token_endpoint or "", client_authentication=r.client_authentication,
        parameters=[pb.Parameter(name=k, value=v) for k, v in r.parameters.items()], curl=r.curl or "", notes=r.notes,
    )


def client_message(application_id: str, c: ClientDetails) -> pb.ClientDescription:
    """A :class:`ClientDetails` as ``ClientDescription``."""
    return pb.ClientDescription(
        client=pb.Client(application_id=application_id, key_manager=c.key_manager, client_id=c.client_id,
                         key_type=c.key_type),
        connection=connection_message(c.connection), scopes=c.scopes,
        token_requests=[token_request_message(r) for r in c.token_requests], notes=c.notes,
    )


def gateway_call_message(call: GatewayCall) -> pb.GatewayCall:
    """A :class:`GatewayCall` as ``GatewayCall`` (headers in order)."""
    return pb.GatewayCall(api_id=call.api_id, method=call.method, url=call.url, curl=call.curl,
                          headers=[pb.Parameter(name=k, value=v) for k, v in call.headers.items()])


def application_description(d: ApplicationDetails) -> pb.ApplicationDescription:
    """An :class:`ApplicationDetails` as ``ApplicationDescription`` (``gateway_call`` unset when None)."""
    message = pb.ApplicationDescription(
        application=pb.Application(id=d.id, name=d.name, owner=d.owner, tier=d.tier, status=d.status,
                                   created_at=d.created_at),
        clients=[client_message(d.id, c) for c in d.clients],
        subscriptions=[api_message(v) for v in d.subscriptions],
    )
    if d.gateway_call is not None:
        message.gateway_call.CopyFrom(gateway_call_message(d.gateway_call))
    return message
