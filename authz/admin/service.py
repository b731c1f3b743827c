"""gRPC admin API ``authz.admin.v1.RegistryAdmin``: registry CRUD for portals and scripts.

Every call goes through :class:`authz.registry.admin.RegistryAdmin` (the CLI's code path) and needs the
metadata ``authorization: Bearer <admin token>``; :func:`start_admin_server` serves it on ``admin.listen``.
Errors are gRPC status codes (see docs/admin-api.md): ``UNAUTHENTICATED``, ``NOT_FOUND``, ``ALREADY_EXISTS``,
``INVALID_ARGUMENT`` (message ``field: reason``), ``FAILED_PRECONDITION`` (the registry's data format is
not the one this authz understands), ``UNAVAILABLE`` (Redis), ``INTERNAL`` (corrupt record).
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from authz.admin.explain import request_of, response_of
from authz.admin.v1 import admin_pb2 as pb
from authz.admin.v1 import admin_pb2_grpc
from authz.admin.views import api_message, application_description
from authz.config import Settings
from authz.decide.explain import Explanation
from authz.keys.connection import ConnectionDirectory
from authz.model import Application, Request, Subscription
from authz.registry.admin import ClientView, RegistryAdmin, Revocation
from authz.registry.developer import DeveloperViews
from authz.registry.store import CorruptRecord, RegistryError, RegistryStore, StoreUnavailable

log = logging.getLogger("authz.admin")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RegistryAdmin"].full_name
_CODES = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "already_exists": grpc.StatusCode.ALREADY_EXISTS,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
}
_R = TypeVar("_R")
Explain = Callable[[Request], Awaitable[Explanation]]
"""Makes the explanation of a request (:func:`authz.ops.services.explainer`)."""


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call without ``authorization: Bearer <token>`` matching ``token`` (UNAUTHENTICATED).

    The comparison is constant-time (``hmac.compare_digest``); the token is never logged.

    Args:
        token: the admin token.
    """

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "admin API: send the metadata 'authorization: Bearer <admin token>'"
            )

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def authorized(self, metadata: Any) -> bool:
        """Whether the call metadata carries the right bearer token (RFC 6750 section 2.1 syntax)."""
        values = [v for k, v in (metadata or ()) if k == "authorization"]
        if len(values) != 1 or not isinstance(values[0], str):
            return False
        scheme, _, credentials = values[0].partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode("utf-8"), self._token)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if self.authorized(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        log.warning("admin API: unauthenticated call to %s refused", handler_call_details.method)
        return self._deny


def _rpc(fn: Callable[..., Awaitable[_R]]) -> Callable[..., Awaitable[_R]]:
    """Map registry exceptions of an RPC method to gRPC status codes."""

    @functools.wraps(fn)
    async def wrapper(self: RegistryAdminServicer, request: Any, context: grpc.aio.ServicerContext) -> _R:
        try:
            await self.admin.ensure_schema()
            return await fn(self, request, context)
        except RegistryError as exc:
            message = f"{exc.field}: {exc}" if exc.field and exc.kind == "invalid" else str(exc)
            await context.abort(_CODES.get(exc.kind, grpc.StatusCode.FAILED_PRECONDITION), message)
        except CorruptRecord as exc:
            log.error("admin API: corrupt registry record: %s", exc)
            await context.abort(grpc.StatusCode.INTERNAL, "the registry holds a corrupt record (see the authz log)")
        except StoreUnavailable as exc:
            log.warning("admin API: registry store unavailable: %s", exc.detail)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "Redis is unreachable; retry later")
        raise AssertionError("unreachable")  # context.abort raises

    return wrapper


def _required(value: str, field: str) -> str:
    if not value:
        raise RegistryError("invalid", "is required", field)
    return value


def _app(a: Application) -> pb.Application:
    return pb.Application(id=a.id, name=a.name, owner=a.owner, tier=a.tier, status=a.status.value,
                          created_at=a.created_at)


def _client(c: ClientView) -> pb.Client:
    return pb.Client(application_id=c.application.id, key_manager=c.key_manager, client_id=c.client_id,
                     key_type=c.key_type.value)


def _sub(s: Subscription) -> pb.Subscription:
    return pb.Subscription(application_id=s.application_id, api_id=s.api_id, status=s.status.value, tier=s.tier,
                           created_at=s.created_at)


def _rev(r: Revocation) -> pb.Revocation:
    return pb.Revocation(key_manager=r.key_manager, jti=r.token_id, expires_at=r.expires_at)


def _opt(request: Any, field: str) -> Any:
    return getattr(request, field) if request.HasField(field) else None


class RegistryAdminServicer(admin_pb2_grpc.RegistryAdminServicer):
    """The ``authz.admin.v1.RegistryAdmin`` methods over :class:`RegistryAdmin`.

    Args:
        admin: the validated registry operations.
        views: the developer views (default: over ``admin``, with its own cache of key manager metadata).
        explain: makes the explanation of a request (``Explain``); None: ``Explain`` is UNIMPLEMENTED.
    """

    def __init__(self, admin: RegistryAdmin, views: DeveloperViews | None = None,
                 explain: Explain | None = None) -> None:
        self.admin = admin
        self.views = views or DeveloperViews(admin, ConnectionDirectory(admin.settings.key_managers))
        self._explain = explain

    def reconfigure(self, settings: Settings) -> None:
        """Check the next calls against a reloaded config (the key managers and APIs that may be named, their
        connection data); calls in flight finish with the previous one."""
        admin = RegistryAdmin(self.admin.store, settings)
        self.views, self.admin = DeveloperViews(admin, ConnectionDirectory(settings.key_managers)), admin

    # ---- applications ----------------------------------------------------------------------------

    @_rpc
    async def CreateApplication(self, request: pb.CreateApplicationRequest, context: Any) -> pb.Application:  # noqa: N802
        app = await self.admin.create_application(
            request.name, owner=request.owner, tier=request.tier or "Unlimited", app_id=request.id or None
        )
        return _app(app)

    @_rpc
    async def GetApplication(self, request: pb.GetApplicationRequest, context: Any) -> pb.Application:  # noqa: N802
        return _app(await self.admin.application(_required(request.application, "application")))

    @_rpc
    async def ListApplications(self, request: pb.ListApplicationsRequest, context: Any) -> pb.ListApplicationsResponse:  # noqa: N802
        apps = await self.admin.store.list_applications()
        return pb.ListApplicationsResponse(applications=[_app(a) for a in apps])

    @_rpc
    async def UpdateApplication(self, request: pb.UpdateApplicationRequest, context: Any) -> pb.Application:  # noqa: N802
        app = await self.admin.update_application(
            _required(request.application, "application"), name=_opt(request, "name"),
            owner=_opt(request, "owner"), tier=_opt(request, "tier"), status=_opt(request, "status"),
        )
        return _app(app)

    @_rpc
    async def DeleteApplication(self, request: pb.DeleteApplicationRequest, context: Any) -> pb.DeleteApplicationResponse:  # noqa: N802
        app = await self.admin.delete_application(_required(request.application, "application"))
        return pb.DeleteApplicationResponse(deleted=_app(app))

    # ---- client IDs ------------------------------------------------------------------------------

    @_rpc
    async def CreateClient(self, request: pb.CreateClientRequest, context: Any) -> pb.Client:  # noqa: N802
        app, km, _ = await self.admin.add_client(
            _required(request.application, "application"), request.client_id,
            key_manager=request.key_manager or None, key_type=request.key_type or "PRODUCTION",
        )
        view = await self.admin.client(request.client_id, key_manager=km)
        if view.application.id != app.id:  # detached and re-attached elsewhere meanwhile
            raise RegistryError("already_exists", f"client ID {request.client_id} is already used by application "
                                f"{view.application.name}")
        return _client(view)

    @_rpc
    async def GetClient(self, request: pb.GetClientRequest, context: Any) -> pb.Client:  # noqa: N802
        view = await self.admin.client(_required(request.client_id, "client_id"),
                                       key_manager=request.key_manager or None)
        return _client(view)

    @_rpc
    async def ListClients(self, request: pb.ListClientsRequest, context: Any) -> pb.ListClientsResponse:  # noqa: N802
        views = await self.admin.clients(_required(request.application, "application"))
        return pb.ListClientsResponse(clients=[_client(v) for v in views])

    @_rpc
    async def UpdateClient(self, request: pb.UpdateClientRequest, context: Any) -> pb.Client:  # noqa: N802
        view = await self.admin.set_client_key_type(
            _required(request.application, "application"), _required(request.client_id, "client_id"),
            _required(request.key_type, "key_type"), key_manager=request.key_manager or None,
        )
        return _client(view)

    @_rpc
    async def DeleteClient(self, request: pb.DeleteClientRequest, context: Any) -> pb.DeleteClientResponse:  # noqa: N802
        await self.admin.remove_client(
            _required(request.application, "application"), _required(request.client_id, "client_id"),
            key_manager=request.key_manager or None,
        )
        return pb.DeleteClientResponse()

    # ---- subscriptions ---------------------------------------------------------------------------

    @_rpc
    async def CreateSubscription(self, request: pb.CreateSubscriptionRequest, context: Any) -> pb.Subscription:  # noqa: N802
        sub = await self.admin.subscribe(
            _required(request.application, "application"), _required(request.api_id, "api_id"),
            tier=request.tier or "Unlimited", status=request.status or "ACTIVE",
        )
        return _sub(sub)

    @_rpc
    async def GetSubscription(self, request: pb.GetSubscriptionRequest, context: Any) -> pb.Subscription:  # noqa: N802
        sub = await self.admin.subscription(_required(request.application, "application"),
                                            _required(request.api_id, "api_id"))
        return _sub(sub)

    @_rpc
    async def ListSubscriptions(self, request: pb.ListSubscriptionsRequest, context: Any) -> pb.ListSubscriptionsResponse:  # noqa: N802
        subs = await self.admin.subscriptions(_required(request.application, "application"))
        return pb.ListSubscriptionsResponse(subscriptions=[_sub(s) for s in subs])

    @_rpc
    async def UpdateSubscription(self, request: pb.UpdateSubscriptionRequest, context: Any) -> pb.Subscription:  # noqa: N802
        sub = await self.admin.update_subscription(
            _required(request.application, "application"), _required(request.api_id, "api_id"),
            status=_opt(request, "status"), tier=_opt(request, "tier"),
        )
        return _sub(sub)

    @_rpc
    async def DeleteSubscription(self, request: pb.DeleteSubscriptionRequest, context: Any) -> pb.DeleteSubscriptionResponse:  # noqa: N802
        await self.admin.unsubscribe(_required(request.application, "application"), _required(request.api_id, "api_id"))
        return pb.DeleteSubscriptionResponse()

    # ---- revocations -----------------------------------------------------------------------------

    @_rpc
    async def CreateRevocation(self, request: pb.CreateRevocationRequest, context: Any) -> pb.Revocation:  # noqa: N802
        rev = await self.admin.revoke(_required(request.jti, "jti"), request.expires_at,
                                      key_manager=request.key_manager or None)
        return _rev(rev)

    @_rpc
    async def GetRevocation(self, request: pb.GetRevocationRequest, context: Any) -> pb.Revocation:  # noqa: N802
        return _rev(await self.admin.revocation(_required(request.jti, "jti"), key_manager=request.key_manager or None))

    @_rpc
    async def ListRevocations(self, request: pb.ListRevocationsRequest, context: Any) -> pb.ListRevocationsResponse:  # noqa: N802
        return pb.ListRevocationsResponse(revocations=[_rev(r) for r in await self.admin.list_revocations()])

    @_rpc
    async def DeleteRevocation(self, request: pb.DeleteRevocationRequest, context: Any) -> pb.DeleteRevocationResponse:  # noqa: N802
        await self.admin.unrevoke(_required(request.jti, "jti"), key_manager=request.key_manager or None)
        return pb.DeleteRevocationResponse()

    # ---- developer views -------------------------------------------------------------------------

    @_rpc
    async def DescribeApplication(self, request: pb.DescribeApplicationRequest, context: Any) -> pb.ApplicationDescription:  # noqa: N802
        details = await self.views.application(
            _required(request.application, "application"), client_id=request.client_id or None,
            key_manager=request.key_manager or None,
        )
        return application_description(details)

    @_rpc
    async def ListApis(self, request: pb.ListApisRequest, context: Any) -> pb.ListApisResponse:  # noqa: N802
        views = await self.views.apis(request.application or None)
        return pb.ListApisResponse(apis=[api_message(v) for v in views])

    @_rpc
    async def GetApi(self, request: pb.GetApiRequest, context: Any) -> pb.Api:  # noqa: N802
        return api_message(await self.views.api(_required(request.api_id, "api_id"), request.application or None))


    # ---- explain -------------------------------------------------------------------------------------

    @_rpc
    async def Explain(self, request: pb.ExplainRequest, context: Any) -> pb.ExplainResponse:  # noqa: N802
        if self._explain is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Explain is not served by this process")
        assert self._explain is not None
        return response_of(await self._explain(request_of(request)))


async def start_admin_server(
    settings: Settings, store: RegistryStore, explain: Explain | None = None,
    servicer: RegistryAdminServicer | None = None,
) -> grpc.aio.Server | None:
    """Serve the admin API on ``admin.listen`` (None when it is not set).

    With ``authz serve --workers N`` only worker 0 calls this (:func:`authz.ops.server.serve`, ``primary``). The
    port is bound without ``SO_REUSEPORT``, so a second process on the same address fails loudly.

    Args:
        settings: the configuration (``admin.listen``, ``admin.token``, key managers and APIs).
        store: the Redis store to write through.
        explain: answers ``Explain`` (:func:`authz.ops.services.explainer`), or None.
        servicer: the servicer to serve (one the caller keeps, to :meth:`RegistryAdminServicer.reconfigure` it);
            default: one over ``store``, ``settings`` and ``explain``.
    Returns:
        The started server (stop it with ``await server.stop(grace)``), or None.
    Raises:
        RuntimeError: the address cannot be bound.
    """
    if settings.admin.listen is None or settings.admin.token is None:
        return None
    server = grpc.aio.server(
        interceptors=[BearerTokenInterceptor(settings.admin.token.get_secret_value())],
        options=[("grpc.so_reuseport", 0)],
    )
    admin_pb2_grpc.add_RegistryAdminServicer_to_server(
        servicer or RegistryAdminServicer(RegistryAdmin(store, settings), explain=explain), server)
    port = server.add_insecure_port(settings.admin.listen)
    await server.start()
    log.info("admin API listening on %s:%d (gRPC %s)", settings.admin.listen.rpartition(":")[0], port, SERVICE_NAME)
    return server
