"""The developer's reads of ``authz registry``: ``app show``, ``api list``, ``api show``, and the connection data
and token instructions ``app add-client`` prints after adding (:mod:`authz.registry.developer` builds them; this
module only renders them as text, or as JSON with ``--json``)."""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import TYPE_CHECKING, Any

from authz.ops.cli_support import run_registry

if TYPE_CHECKING:  # the registry and key modules are imported when a command runs, not at CLI start
    from authz.keys.connection import ConnectionData
    from authz.keys.token_requests import TokenRequest
    from authz.registry.developer import (
        ApiView,
        ApplicationDetails,
        ClientDetails,
        DeveloperViews,
        GatewayCall,
    )

LEGEND = (
    "Replace <CLIENT_SECRET> with the client's secret at the key manager, <USER_NAME> and <USER_PASSWORD> with a\n"
    "user's credentials, and <ACCESS_TOKEN> with the access_token of the token response: authz never sees them."
)
GRANT_TITLES = {
    "password": "password grant (a user's credentials, RFC 6749 section 4.3)",
    "client_credentials": "client credentials grant (the application itself, RFC 6749 section 4.4)",
}


def developer_views(admin: Any) -> DeveloperViews:
    """The developer views over ``admin`` (a :class:`authz.registry.admin.RegistryAdmin`), fetching key manager
    metadata as needed."""
    from authz.keys.connection import ConnectionDirectory  # noqa: PLC0415
    from authz.registry.developer import DeveloperViews  # noqa: PLC0415

    return DeveloperViews(admin, ConnectionDirectory(admin.settings.key_managers))


def _block(text: str, indent: str) -> list[str]:
    return textwrap.indent(text, indent).splitlines()


def connection_text(c: ConnectionData, indent: str = "  ") -> list[str]:
    """Lines describing a key manager's connection data."""
    rows = [
        ("issuer", c.issuer),
        ("token endpoint", c.token_endpoint or "unknown (see below)"),
        ("JWKS URI", c.jwks_uri or "-"),
        ("grant types", ", ".join(c.grant_types_supported) or "not stated"),
    ]
    if c.scopes_supported:
        rows.append(("scopes supported", " ".join(c.scopes_supported)))
    if c.token_endpoint_auth_methods_supported:
        rows.append(("client auth", ", ".join(c.token_endpoint_auth_methods_supported)))
    source = {"discovery": "discovery", "config": "the config", "discovery+config": "discovery and the config",
              "none": "nothing (no discovery, no connection fields in the config)"}[c.source]
    rows.append(("from", source + (f" ({c.metadata_url})" if c.metadata_url and "discovery" in c.source else "")))
    lines = [f"{indent}{name:<17} {value}" for name, value in rows]
    lines += [f"{indent}note: {p}" for p in c.problems]
    return lines


def token_requests_text(requests: tuple[TokenRequest, ...], indent: str = "  ") -> list[str]:
    """Lines with each token request: its ``curl``, or its form parameters when the endpoint is unknown."""
    lines = []
    for r in requests:
        lines.append(f"{indent}{GRANT_TITLES.get(r.grant_type, r.grant_type)}:")
        if r.curl is not None:
            lines += _block(r.curl, indent + "  ")
        else:
            lines.append(f"{indent}  POST to the key manager's token endpoint (unknown) the form parameters "
                         + " ".join(f"{k}={v}" for k, v in r.parameters.items()))
        lines += [f"{indent}  note: {n}" for n in r.notes]
    return lines


def client_text(c: ClientDetails, *, header: bool = True) -> list[str]:
    """Lines for one client ID: its key manager's connection data and its token requests."""
    lines = [f"Client ID {c.client_id} (key manager {c.key_manager}, {c.key_type})"] if header else []
    lines.append(f"Key manager {c.key_manager}:")
    lines += connection_text(c.connection)
    scopes = f"the scopes its APIs require: {' '.join(c.scopes)}" if c.scopes else "no scope: its APIs require none"
    lines += ["", f"Get an access token for client ID {c.client_id} ({scopes}):"]
    lines += token_requests_text(c.token_requests)
    lines += [f"note: {n}" for n in c.notes]
    return lines


def gateway_text(call: GatewayCall | None) -> list[str]:
    """Lines with the call through the gateway (or how to get one)."""
    if call is None:
        return ["No subscription yet: subscribe the application to an API (`authz registry api list`, "
                "`authz registry subscribe APP API_ID`) to call it through the gateway."]
    path = call.url.split("://", 1)[-1].partition("/")[2]
    return [f"Call {call.method} /{path} of API {call.api_id} through the gateway with the access token:",
            *_block(call.curl, "  ")]


def resources_text(api: ApiView, indent: str = "  ") -> list[str]:
    """One line per resource: methods, full path, scopes (with their match rule) or public."""
    width = max(len(r.path) for r in api.resources)
    lines = []
    for r in api.resources:
        if r.public:
            need = "public: no token needed"
        elif not r.scopes:
            need = "token needed, no scope"
        elif len(r.scopes) == 1:
            need = f"scope {r.scopes[0]}"
        else:
            need = f"scopes {' '.join(r.scopes)} ({'any one of them' if r.scope_match == 'any' else 'all of them'})"
        lines.append(f"{indent}{','.join(r.methods):<7} {r.path:<{width}}  {need}")
    return lines


def api_text(api: ApiView, app: str | None = None) -> list[str]:
    """Lines for one API: its header, with ``app``'s subscription status when asked, then its resources."""
    head = [api.id, api.name] + ([api.version] if api.version else []) + [
        f"context {api.context}", f"hosts {','.join(api.hosts) or 'any'}",
        f"key managers {','.join(api.key_managers)}",
    ]
    if api.public:
        head.append("public")
    if app is not None:
        sub = api.subscription
        head.append(f"subscribed: {sub.status} (tier {sub.tier})" if sub else f"{app} not subscribed")
    return ["  ".join(head), *resources_text(api)]


def application_text(d: ApplicationDetails) -> list[str]:
    """The whole ``app show`` text."""
    lines = [f"{d.name}  id={d.id}  owner={d.owner or '-'}  tier={d.tier}  status={d.status}", ""]
    if d.subscriptions:
        lines.append("Subscriptions:")
        for api in d.subscriptions:
            sub = api.subscription
            lines.append(f"  {api.id}  {api.name}  {sub.status if sub else '-'}  tier={sub.tier if sub else '-'}")
            lines += resources_text(api, "    ")
    else:
        lines.append("Subscriptions: none (`authz registry api list` shows the APIs to subscribe to)")
    for c in d.clients:
        lines += ["", *client_text(c)]
    if not d.clients:
        lines += ["", "Client IDs: none: attach the client ID of your OAuth2 application at the key manager with "
                      f"`authz registry app add-client {json.dumps(d.name)} CLIENT_ID`"]
    return [*lines, "", *gateway_text(d.gateway_call), "", LEGEND]


def _json(data: Any) -> str:
    from authz.registry.developer import as_data  # noqa: PLC0415

    return json.dumps(as_data(data), indent=2)


async def add_client_text(views: DeveloperViews, app_id: str, client_id: str, km: str, added: bool,
                          as_json: bool) -> str:
    """What ``app add-client`` prints after adding: connection data, token requests and a gateway call."""
    from authz.registry.developer import as_data  # noqa: PLC0415

    details = await views.application(app_id, client_id=client_id, key_manager=km)
    if as_json:
        return json.dumps({"added": added, **as_data(details)}, indent=2)
    verb = "attached" if added else "already attached"
    lines = [f"client ID {client_id} of key manager {km} {verb} to application {details.name}", ""]
    for c in details.clients:
        lines += client_text(c, header=False)
    return "\n".join([*lines, "", *gateway_text(details.gateway_call), "", LEGEND])


def cmd_app_show(args: argparse.Namespace) -> int:
    """``authz registry app show APP [--json]``."""

    async def act(admin: Any) -> str:
        details = await developer_views(admin).application(args.app)
        return _json(details) if args.json else "\n".join(application_text(details))

    return run_registry(args, act)


def cmd_api_list(args: argparse.Namespace) -> int:
    """``authz registry api list [--app APP] [--json]``: "explore APIs"."""

    async def act(admin: Any) -> str:
        apis = await developer_views(admin).apis(args.app)
        if args.json:
            return _json(apis)
        return "\n\n".join("\n".join(api_text(api, args.app)) for api in apis)

    return run_registry(args, act)


def cmd_api_show(args: argparse.Namespace) -> int:
    """``authz registry api show API [--app APP] [--json]``."""

    async def act(admin: Any) -> str:
        api = await developer_views(admin).api(args.api, args.app)
        return _json(api) if args.json else "\n".join(api_text(api, args.app))

    return run_registry(args, act)


def add_parsers(app: Any, rsub: Any, leaf: argparse.ArgumentParser) -> None:
    """Add ``app show`` to the ``app`` subparsers and ``api list|show`` to the registry subparsers ``rsub``."""
    p = app.add_parser("show", help="an application, its client IDs with token instructions, its subscriptions",
                       parents=[leaf])
    p.add_argument("app", help="application ID or name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_app_show)
    api = rsub.add_parser("api", help="the APIs one can subscribe to").add_subparsers(dest="api_command",
                                                                                     required=True)
    p = api.add_parser("list", help="every API with its resources and scopes (explore APIs)", parents=[leaf])
    p.add_argument("--app", default=None, help="show this application's subscription to each API")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_api_list)
    p = api.add_parser("show", help="one API", parents=[leaf])
    p.add_argument("api", help="API ID (or its exact name)")
    p.add_argument("--app", default=None, help="show this application's subscription to it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_api_show)
