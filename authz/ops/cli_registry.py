"""``authz registry ...``: applications, client IDs, subscriptions and revocations, as a developer portal
manages them (through :class:`authz.registry.admin.RegistryAdmin`, the admin API's code path)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from authz.ops.cli_developer import add_client_text, add_parsers, developer_views
from authz.ops.cli_support import DEFAULT_CONFIG, run_registry


def cmd_app_create(args: argparse.Namespace) -> int:
    """``authz registry app create NAME``."""

    async def act(admin: Any) -> str:
        app = await admin.create_application(args.name, owner=args.owner, tier=args.tier, app_id=args.id)
        return f"created application {app.name} (id {app.id})"

    return run_registry(args, act)


def cmd_app_add_client(args: argparse.Namespace) -> int:
    """``authz registry app add-client APP CLIENT_ID [--json]``: attach, then print the key manager's connection
    data, token requests for this client ID and a call through the gateway."""

    async def act(admin: Any) -> str:
        app, km, added = await admin.add_client(
            args.app, args.client_id, key_manager=args.key_manager, key_type=args.key_type
        )
        return await add_client_text(developer_views(admin), app.id, args.client_id, km, added, args.json)

    return run_registry(args, act)


def cmd_app_remove_client(args: argparse.Namespace) -> int:
    """``authz registry app remove-client APP CLIENT_ID``."""

    async def act(admin: Any) -> str:
        await admin.remove_client(args.app, args.client_id, key_manager=args.key_manager)
        return f"client ID {args.client_id} detached from {args.app}"

    return run_registry(args, act)


def cmd_app_delete(args: argparse.Namespace) -> int:
    """``authz registry app delete APP``."""

    async def act(admin: Any) -> str:
        app = await admin.delete_application(args.app)
        return f"deleted application {app.name} (id {app.id}) with its client IDs and subscriptions"

    return run_registry(args, act)


def cmd_app_set_status(args: argparse.Namespace) -> int:
    """``authz registry app set-status APP STATUS``."""

    async def act(admin: Any) -> str:
        app = await admin.set_application_status(args.app, args.status)
        return f"application {app.name} is now {args.status.upper()}"

    return run_registry(args, act)


def cmd_app_list(args: argparse.Namespace) -> int:
    """``authz registry app list [--json]``."""

    async def act(admin: Any) -> str:
        views = await admin.list_applications()
        if args.json:
            return json.dumps(
                [
                    {
                        "id": v.application.id,
                        "name": v.application.name,
                        "owner": v.application.owner,
                        "tier": v.application.tier,
                        "status": v.application.status.value,
                        "clients": [{"key_manager": k, "client_id": c, "key_type": t.value} for k, c, t in v.clients],
                        "subscriptions": [
                            {"api_id": s.api_id, "status": s.status.value, "tier": s.tier} for s in v.subscriptions
                        ],
                    }
                    for v in views
                ],
                indent=2,
            )
        if not views:
            return "no applications"
        lines = []
        for v in views:
            a = v.application
            lines.append(f"{a.name}  id={a.id}  owner={a.owner or '-'}  tier={a.tier}  status={a.status.value}")
            for km, client_id, key_type in v.clients:
                lines.append(f"  client  {km}:{client_id}  {key_type.value}")
            for s in v.subscriptions:
                lines.append(f"  subscribed  {s.api_id}  {s.status.value}  tier={s.tier}")
        return "\n".join(lines)

    return run_registry(args, act)


def cmd_subscribe(args: argparse.Namespace) -> int:
    """``authz registry subscribe APP API_ID``."""

    async def act(admin: Any) -> str:
        sub = await admin.subscribe(args.app, args.api_id, tier=args.tier)
        return f"subscribed {args.app} to {sub.api_id} ({sub.status.value}, tier {sub.tier})"

    return run_registry(args, act)


def cmd_unsubscribe(args: argparse.Namespace) -> int:
    """``authz registry unsubscribe APP API_ID``."""

    async def act(admin: Any) -> str:
        await admin.unsubscribe(args.app, args.api_id)
        return f"unsubscribed {args.app} from {args.api_id}"

    return run_registry(args, act)


def cmd_subscription_set_status(args: argparse.Namespace) -> int:
    """``authz registry subscription set-status APP API_ID STATUS``."""

    async def act(admin: Any) -> str:
        await admin.set_subscription_status(args.app, args.api_id, args.status)
        return f"subscription of {args.app} to {args.api_id} is now {args.status.upper()}"

    return run_registry(args, act)


def cmd_revoke(args: argparse.Namespace) -> int:
    """``authz registry revoke JTI --expires-at EPOCH``: checks answer 401 900901 for that token until it expires."""

    async def act(admin: Any) -> str:
        r = await admin.revoke(args.jti, args.expires_at, key_manager=args.key_manager)
        return f"revoked token ID {r.token_id} of key manager {r.key_manager} until {r.expires_at}"

    return run_registry(args, act)


def cmd_unrevoke(args: argparse.Namespace) -> int:
    """``authz registry unrevoke JTI``: withdraw a revocation."""

    async def act(admin: Any) -> str:
        await admin.unrevoke(args.jti, key_manager=args.key_manager)
        return f"token ID {args.jti} is no longer revoked"

    return run_registry(args, act)


def cmd_revocations(args: argparse.Namespace) -> int:
    """``authz registry revocations``: list revoked token IDs with their expiry."""

    async def act(admin: Any) -> str:
        rows = await admin.list_revocations()
        return "\n".join(f"{r.key_manager}  {r.token_id}  until {r.expires_at}" for r in rows) or "no revocations"

    return run_registry(args, act)


def cmd_export(args: argparse.Namespace) -> int:
    """``authz registry export``: the whole registry as YAML on stdout (see :mod:`authz.registry.yaml_io`)."""
    from authz.registry.yaml_io import export_yaml  # noqa: PLC0415

    async def act(admin: Any) -> str:
        return (await export_yaml(admin)).rstrip("\n")

    return run_registry(args, act)


def cmd_import(args: argparse.Namespace) -> int:
    """``authz registry import FILE [--dry-run]``: apply a YAML export; prints each change (idempotent)."""
    from authz.registry.yaml_io import import_yaml  # noqa: PLC0415

    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1

    async def act(admin: Any) -> str:
        changes = await import_yaml(admin, text, dry_run=args.dry_run, source=args.file)
        head = "would apply" if args.dry_run else "applied"
        if not changes:
            return "no changes"
        return "\n".join([*changes, f"{head} {len(changes)} change(s)"])

    return run_registry(args, act)


def add_parser(sub: Any) -> None:
    """Add ``registry`` and its subcommands to the ``authz`` command's subparsers ``sub``."""
    config_help = "YAML config (default: $AUTHZ_CONFIG, else config/authz.yaml)"
    reg = sub.add_parser("registry", help="applications, client IDs and subscriptions in Redis")
    reg.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    rsub = reg.add_subparsers(dest="registry_command", required=True)
    # --config is accepted after the subcommand too (`authz registry app list --config FILE`).
    leaf = argparse.ArgumentParser(add_help=False)
    leaf.add_argument("--config", default=argparse.SUPPRESS, help=config_help)

    app = rsub.add_parser("app", help="applications").add_subparsers(dest="app_command", required=True)
    p = app.add_parser("create", help="create an application", parents=[leaf])
    p.add_argument("name")
    p.add_argument("--owner", default="")
    p.add_argument("--tier", default="Unlimited")
    p.add_argument("--id", default=None, help="application ID (default: a new UUID)")
    p.set_defaults(func=cmd_app_create)
    p = app.add_parser("add-client", help="attach an OAuth2 client ID of a key manager", parents=[leaf])
    p.add_argument("app", help="application ID or name")
    p.add_argument("client_id")
    p.add_argument("--key-manager", default=None, help="key manager name (default: the only one configured)")
    p.add_argument("--key-type", default="PRODUCTION", help="PRODUCTION or SANDBOX")
    p.add_argument("--json", action="store_true", help="the connection data and token requests as JSON")
    p.set_defaults(func=cmd_app_add_client)
    p = app.add_parser("remove-client", help="detach a client ID", parents=[leaf])
    p.add_argument("app")
    p.add_argument("client_id")
    p.add_argument("--key-manager", default=None)
    p.set_defaults(func=cmd_app_remove_client)
    p = app.add_parser("set-status", help="ACTIVE or INACTIVE", parents=[leaf])
    p.add_argument("app")
    p.add_argument("status")
    p.set_defaults(func=cmd_app_set_status)
    p = app.add_parser("delete", help="delete an application, its client IDs and subscriptions", parents=[leaf])
    p.add_argument("app")
    p.set_defaults(func=cmd_app_delete)
    p = app.add_parser("list", help="list applications", parents=[leaf])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_app_list)
    add_parsers(app, rsub, leaf)

    p = rsub.add_parser("subscribe", help="subscribe an application to an API", parents=[leaf])
    p.add_argument("app")
    p.add_argument("api_id")
    p.add_argument("--tier", default="Unlimited")
    p.set_defaults(func=cmd_subscribe)
    p = rsub.add_parser("unsubscribe", help="remove a subscription", parents=[leaf])
    p.add_argument("app")
    p.add_argument("api_id")
    p.set_defaults(func=cmd_unsubscribe)
    subs = rsub.add_parser("subscription", help="subscriptions").add_subparsers(dest="sub_command", required=True)
    p = subs.add_parser("set-status", help="ACTIVE, BLOCKED, PROD_ONLY_BLOCKED, ON_HOLD or REJECTED", parents=[leaf])
    p.add_argument("app")
    p.add_argument("api_id")
    p.add_argument("status")
    p.set_defaults(func=cmd_subscription_set_status)

    p = rsub.add_parser("revoke", help="revoke an access token by its jti until it expires", parents=[leaf])
    p.add_argument("jti")
    p.add_argument("--expires-at", "--exp", dest="expires_at", type=float, required=True,
                   help="the token's exp, seconds since the epoch")
    p.add_argument("--key-manager", default=None, help="key manager name (default: the only one configured)")
    p.set_defaults(func=cmd_revoke)
    p = rsub.add_parser("unrevoke", help="withdraw a revocation", parents=[leaf])
    p.add_argument("jti")
    p.add_argument("--key-manager", default=None)
    p.set_defaults(func=cmd_unrevoke)
    p = rsub.add_parser("revocations", help="list revoked token IDs", parents=[leaf])
    p.set_defaults(func=cmd_revocations)
    p = rsub.add_parser("export", help="print the registry as YAML", parents=[leaf])
    p.set_defaults(func=cmd_export)
    p = rsub.add_parser("import", help="apply a YAML export (idempotent)", parents=[leaf])
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="print the changes without writing")
    p.set_defaults(func=cmd_import)
