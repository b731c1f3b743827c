"""The developer's side of the registry, as a developer portal shows it: "explore APIs", an application with
its client IDs, each with its key manager's connection data and ready-to-run token requests, its
subscriptions, and one call through the gateway.

Shared by ``authz registry app add-client | app show | api list | api show`` and the admin API's
``DescribeApplication``, ``ListApis`` and ``GetApi``. Reads only; never a secret (placeholders of
:mod:`authz.keys.token_requests` stand for them). :func:`as_data` turns every view into JSON-ready data.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authz.config import ApiSettings, ResourceSettings, Settings
from authz.keys.connection import ConnectionData, ConnectionDirectory
from authz.keys.token_requests import ACCESS_TOKEN, TokenRequest, render_curl, token_requests
from authz.model import Subscription
from authz.registry.admin import RegistryAdmin
from authz.registry.store import RegistryError

GATEWAY_URL = "<GATEWAY_URL>"
"""Placeholder of the gateway's base URL when the config has no ``gateway_url``."""

_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class ResourceView:
    """A resource of an API as developers see it.

    Attributes:
        path: the full path template (context path + resource path), e.g. ``/orders/v1/items/{id}``.
        methods: HTTP methods, ``*`` for any.
        scopes: scopes a token needs; ``scope_match`` says whether one (``any``) or every one (``all``).
        scope_match: ``any`` or ``all``.
        public: True for ``auth: none`` (no token needed).
    """

    path: str
    methods: tuple[str, ...]
    scopes: tuple[str, ...]
    scope_match: str
    public: bool


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """An application's subscription to an API.

    Attributes:
        application_id: the application.
        api_id: the API.
        status: ``ACTIVE``, ``BLOCKED``, ``PROD_ONLY_BLOCKED``, ``ON_HOLD`` or ``REJECTED``.
        tier: the subscription's tier.
        created_at: seconds since the epoch.
    """

    application_id: str
    api_id: str
    status: str
    tier: str
    created_at: float


@dataclass(frozen=True, slots=True)
class ApiView:
    """An API one can subscribe to.

    Attributes:
        id / name / context / version / hosts: from ``apis[]`` (``hosts`` empty: any host).
        resources: its resources.
        public: True when every resource is public (``auth: none``).
        key_managers: the key managers whose tokens it accepts (every configured one unless the API names some).
        scopes: every scope its resources name, in order, once each.
        subscription: the subscription of the application asked about, None when it has none (or none was
            asked about).
    """

    id: str
    name: str
    context: str
    version: str
    hosts: tuple[str, ...]
    resources: tuple[ResourceView, ...]
    public: bool
    key_managers: tuple[str, ...]
    scopes: tuple[str, ...]
    subscription: SubscriptionView | None = None


@dataclass(frozen=True, slots=True)
class GatewayCall:
    """A call of one subscribed resource through the gateway (Envoy) with the access token.

    Attributes:
        api_id: the API called.
        method: the HTTP method.
        url: the full URL (``<GATEWAY_URL>`` at its start when the config has no ``gateway_url``).
        headers: request headers: ``Authorization: Bearer <ACCESS_TOKEN>``, and ``Host`` when the API is served
            on hosts other than the gateway URL's.
        curl: the command (replace ``<ACCESS_TOKEN>`` with the token response's ``access_token``).
    """

    api_id: str
    method: str
    url: str
    headers: dict[str, str]
    curl: str


@dataclass(frozen=True, slots=True)
class ClientDetails:
    """A client ID of an application with what its developer needs to get tokens.

    Attributes:
        key_manager / client_id / key_type: the registry entry (``PRODUCTION`` or ``SANDBOX``).
        connection: the key manager's connection data.
        scopes: the scopes asked for: those of the subscribed APIs that accept this key manager.
        token_requests: a password-grant and a client-credentials request.
        notes: what else to know (APIs that do not accept this key manager's tokens...).
    """

    key_manager: str
    client_id: str
    key_type: str
    connection: ConnectionData
    scopes: tuple[str, ...]
    token_requests: tuple[TokenRequest, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApplicationDetails:
    """An application as its developer sees it.

    Attributes:
        id / name / owner / tier / status / created_at: the application.
        clients: its client IDs with connection data and token requests.
        subscriptions: the APIs it is subscribed to, each with its ``subscription``.
        gateway_call: a call of one subscribed resource, None without a subscription.
    """

    id: str
    name: str
    owner: str
    tier: str
    status: str
    created_at: float
    clients: tuple[ClientDetails, ...]
    subscriptions: tuple[ApiView, ...]
    gateway_call: GatewayCall | None


def as_data(view: Any) -> Any:
    """A view as JSON-ready data (dicts, lists, strings, numbers, None)."""
    if dataclasses.is_dataclass(view) and not isinstance(view, type):
        return {f.name: as_data(getattr(view, f.name)) for f in dataclasses.fields(view)}
    if isinstance(view, dict):
        return {k: as_data(v) for k, v in view.items()}
    if isinstance(view, list | tuple):
        return [as_data(v) for v in view]
    return view


def accepted_key_managers(settings: Settings, api: ApiSettings) -> tuple[str, ...]:
    """The key managers whose tokens ``api`` accepts: those it names (``apis[].key_managers``), else all."""
    named = getattr(api, "key_managers", None) or []
    return tuple(named) if named else tuple(km.name for km in settings.key_managers)


def api_view(settings: Settings, api: ApiSettings, subscription: Subscription | None = None) -> ApiView:
    """The :class:`ApiView` of a configured API, with the application's ``subscription`` if given."""
    resources = tuple(
        ResourceView(_join(api.context, r.path), tuple(r.methods), tuple(r.scopes), r.scope_match, r.auth == "none")
        for r in api.resources
    )
    sub = None
    if subscription is not None:
        sub = SubscriptionView(subscription.application_id, subscription.api_id, subscription.status.value,
                               subscription.tier, subscription.created_at)
    return ApiView(api.id, api.name, api.context, api.version, tuple(api.hosts), resources,
                   all(r.public for r in resources), accepted_key_managers(settings, api),
                   tuple(dict.fromkeys(s for r in resources for s in r.scopes)), sub)


def gateway_call(settings: Settings, api: ApiSettings) -> GatewayCall:
    """A call of one resource of ``api`` through the gateway, with the access token placeholder.

    The resource is the first that needs a token, has no template segment and allows ``GET``, as far as the API
    has one (templates become ``<name>`` placeholders otherwise).

    Args:
        settings: the config (``gateway_url``).
        api: the API.
    Returns:
        The :class:`GatewayCall`.
    """
    def rank(r: ResourceSettings) -> tuple[bool, bool, bool]:
        return (r.auth == "none", "{" in r.path or "*" in r.path, not {"GET", "*"} & set(r.methods))

    resource = min(api.resources, key=rank)
    method = "GET" if {"GET", "*"} & set(resource.methods) else resource.methods[0]
    path = _TEMPLATE.sub(r"<\1>", _join(api.context, resource.path))
    path = "/".join({"*": "<segment>", "**": "<path>"}.get(seg, seg) for seg in path.split("/"))
    base = (settings.gateway_url or GATEWAY_URL).rstrip("/")
    headers = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    host = urlsplit(base).hostname if settings.gateway_url else None
    if api.hosts and host not in api.hosts:
        headers = {"Host": api.hosts[0], **headers}
    url = base + path
    return GatewayCall(api.id, method, url, headers, render_curl(method, url, headers=headers, include_headers=True))


class DeveloperViews:
    """The reads of a developer portal over the registry and the configuration.

    Args:
        admin: the validated registry operations (application lookup with did-you-mean).
        directory: the key managers' connection data (cached metadata).
    """

    def __init__(self, admin: RegistryAdmin, directory: ConnectionDirectory) -> None:
        self.admin = admin
        self.settings = admin.settings
        self.directory = directory

    def _api(self, id_or_name: str) -> ApiSettings:
        named = [a for a in self.settings.apis if a.name == id_or_name]
        api = self.settings.api(id_or_name) or (named[0] if len(named) == 1 else None)
        if api is None:
            self.admin.api_id(id_or_name)  # raises RegistryError with the did-you-mean message
            raise AssertionError("unreachable: api_id refuses an unknown API")
        return api

    async def apis(self, application: str | None = None) -> list[ApiView]:
        """Every configured API ("explore APIs"), in config order.

        Args:
            application: an application ID or name: each API then carries its subscription, if any.
        Raises:
            RegistryError: ``not_found`` for an unknown application.
        """
        subs = await self._subscriptions(application)
        return [api_view(self.settings, api, subs.get(api.id)) for api in self.settings.apis]

    async def api(self, id_or_name: str, application: str | None = None) -> ApiView:
        """One API by ID (or exact display name), with ``application``'s subscription when given.

        Raises:
            RegistryError: ``invalid`` (field ``api_id``, naming the configured IDs) or ``not_found``.
        """
        api = self._api(id_or_name)
        subs = await self._subscriptions(application)
        return api_view(self.settings, api, subs.get(api.id))

    async def _subscriptions(self, application: str | None) -> dict[str, Subscription]:
        if application is None:
            return {}
        return {s.api_id: s for s in await self.admin.subscriptions(application)}

    async def application(
        self, id_or_name: str, *, client_id: str | None = None, key_manager: str | None = None
    ) -> ApplicationDetails:
        """An application with its client IDs, connection data, token requests, subscriptions and a gateway call.

        Args:
            id_or_name: the application's ID or name.
            client_id: only this client ID (as after ``add-client``); None: every client ID.
            key_manager: the key manager of ``client_id`` (default: the only one configured, else any).
        Returns:
            The :class:`ApplicationDetails`.
        Raises:
            RegistryError: ``not_found`` (application, or ``client_id`` not attached to it).
        """
        app = await self.admin.application(id_or_name)
        subs = await self.admin.store.subscriptions_of(app.id)
        clients = await self.admin.store.clients_of(app.id)
        if client_id is not None:
            km = self.admin.key_manager_name(key_manager) if key_manager else None
            clients = [c for c in clients if c[1] == client_id and km in (None, c[0])]
            if not clients:
                raise RegistryError("not_found", f"client ID {client_id} is not attached to application {app.name}")
        views = [api_view(self.settings, api, s) for s in subs if (api := self.settings.api(s.api_id)) is not None]
        details = [await self._client(km, cid, key_type.value, views) for km, cid, key_type in clients]
        return ApplicationDetails(
            app.id, app.name, app.owner, app.tier, app.status.value, app.created_at, tuple(details), tuple(views),
            self._gateway_call(subs),
        )

    async def _client(self, km: str, client_id: str, key_type: str, apis: Sequence[ApiView]) -> ClientDetails:
        if km not in {k.name for k in self.settings.key_managers}:  # registered, then removed from the config
            gone = ConnectionData(km, "", None, None, problems=(
                f"key manager {km} is not in the configuration any more: tokens of this client ID are refused",))
            return ClientDetails(km, client_id, key_type, gone, (), ())
        connection = await self.directory.get(km)
        accepting = [v for v in apis if km in v.key_managers]
        notes = tuple(f"API {v.id} does not accept tokens of key manager {km} (it accepts "
                      f"{', '.join(v.key_managers)})" for v in apis if km not in v.key_managers)
        scopes = tuple(dict.fromkeys(s for v in accepting for s in v.scopes))
        requests = token_requests(self.settings.key_manager(km), connection, client_id, scopes)
        return ClientDetails(km, client_id, key_type, connection, scopes, requests, notes)

    def _gateway_call(self, subs: Sequence[Subscription]) -> GatewayCall | None:
        ordered = sorted(subs, key=lambda s: s.status.value != "ACTIVE")
        for sub in ordered:
            api = self.settings.api(sub.api_id)
            if api is not None:
                return gateway_call(self.settings, api)
        return None


def _join(context: str, path: str) -> str:
    if context == "/":
        return path
    return context if path == "/" else context + path
