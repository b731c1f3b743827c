"""YAML export and import of the registry (``authz registry export`` / ``authz registry import``).

The document (``schema`` is the registry data version, :data:`authz.registry.redis_store.SCHEMA_VERSION`)::

    schema: 1
    applications:
      - id: demo-app
        name: Demo App
        owner: alice
        tier: Unlimited
        status: ACTIVE
        clients:
          - {key_manager: demo, client_id: demo-client, key_type: PRODUCTION}
        subscriptions:
          - {api_id: orders-v1, status: ACTIVE, tier: Unlimited}
    revocations:
      - {key_manager: demo, jti: 6f1c..., expires_at: 1764403600}

Import goes through :class:`authz.registry.admin.RegistryAdmin` (the same validated code path as the CLI and
the admin API). It is idempotent: it creates or updates what differs and leaves the rest untouched; it never
deletes what the file does not mention. The whole file is validated and every conflict (a client ID owned
by another application, a name used by another ID) is found before the first write.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from authz.model import ApplicationStatus, KeyType, SubscriptionStatus
from authz.registry.admin import (
    RegistryAdmin,
    check_application_fields,
    check_client_id,
    check_tier,
    check_token_id,
)
from authz.registry.store import SCHEMA_VERSION, RegistryError, client_taken
from authz.registry.subscriptions import unusable_subscription


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientDoc(_Doc):
    """One client ID of an application."""

    key_manager: Annotated[str, Field(min_length=1)]
    client_id: Annotated[str, Field(min_length=1)]
    key_type: KeyType = KeyType.PRODUCTION


class SubscriptionDoc(_Doc):
    """One subscription of an application."""

    api_id: Annotated[str, Field(min_length=1)]
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    tier: Annotated[str, Field(min_length=1)] = "Unlimited"


class ApplicationDoc(_Doc):
    """One application with its client IDs and subscriptions."""

    id: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    owner: str = ""
    tier: Annotated[str, Field(min_length=1)] = "Unlimited"
    status: ApplicationStatus = ApplicationStatus.ACTIVE
    clients: list[ClientDoc] = []
    subscriptions: list[SubscriptionDoc] = []


class RevocationDoc(_Doc):
    """One revoked token ID; ``expires_at`` is the stored expiry (epoch seconds, leeway included)."""

    key_manager: Annotated[str, Field(min_length=1)]
    jti: Annotated[str, Field(min_length=1)]
    expires_at: int


class RegistryDoc(_Doc):
    """The whole export document."""

    schema_: Annotated[Literal[1], Field(alias="schema")] = 1
    applications: list[ApplicationDoc] = []
    revocations: list[RevocationDoc] = []


async def export_document(admin: RegistryAdmin) -> dict[str, Any]:
    """The registry as a plain document (applications sorted by name, revocations by key manager and jti)."""
    apps = []
    for view in await admin.list_applications():
        a = view.application
        apps.append({
            "id": a.id,
            "name": a.name,
            "owner": a.owner,
            "tier": a.tier,
            "status": a.status.value,
            "clients": [{"key_manager": km, "client_id": c, "key_type": t.value} for km, c, t in view.clients],
            "subscriptions": [
                {"api_id": s.api_id, "status": s.status.value, "tier": s.tier} for s in view.subscriptions
            ],
        })
    revocations = [
        {"key_manager": r.key_manager, "jti": r.token_id, "expires_at": r.expires_at}
        for r in await admin.list_revocations()
    ]
    return {"schema": int(SCHEMA_VERSION), "applications": apps, "revocations": revocations}


async def export_yaml(admin: RegistryAdmin) -> str:
    """:func:`export_document` as YAML text."""
    return yaml.safe_dump(await export_document(admin), sort_keys=False, allow_unicode=True)


def parse_document(text: str, source: str = "<input>") -> RegistryDoc:
    """Parse and validate an export document.

    Raises:
        RegistryError: ``invalid``, naming the YAML path of each problem (``applications[0].status: ...``).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError("invalid", f"{source}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    try:
        return RegistryDoc.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ""
            for part in err["loc"]:
                loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
            problems.append(f"{loc or '(top level)'}: {err['msg']}")
        raise RegistryError("invalid", f"{source}: " + "; ".join(problems)) from None


Step = tuple[str, Callable[[], Awaitable[Any]]]


async def plan_import(admin: RegistryAdmin, doc: RegistryDoc, now: float | None = None) -> list[Step]:
    """The writes that make the registry match ``doc``: ``(description, action)`` in order.

    Reads only. Raises RegistryError for anything that would fail (unknown key manager or API, a client ID
    owned by another application, a name used by another application, duplicate entries in the file).
    """
    now = time.time() if now is None else now
    steps: list[Step] = []
    store = admin.store
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    seen_clients: set[tuple[str, str]] = set()
    ids_in_file = {app.id for app in doc.applications}
    names_in_file = {app.name for app in doc.applications}
    for index, app in enumerate(doc.applications):
        where = f"applications[{index}]"
        if app.id in seen_ids or app.name in seen_names:
            raise RegistryError("invalid", f"{where}: application {app.name!r} ({app.id}) appears twice")
        seen_ids.add(app.id)
        seen_names.add(app.name)
        # The same rules the writes apply, checked before the first write so that nothing half-applies.
        _at(where, check_application_fields, app.name, app.owner, app.tier, app.id)
        for c_index, client in enumerate(app.clients):
            _at(f"{where}.clients[{c_index}]", check_client_id, client.client_id)
        for s_index, sub in enumerate(app.subscriptions):
            _at(f"{where}.subscriptions[{s_index}]", check_tier, sub.tier)
        if app.name != app.id and (app.name in ids_in_file or await store.get_application(app.name) is not None):
            raise RegistryError("already_exists", f"{where}.name: {app.name!r} is the ID of another application")
        if app.id != app.name and app.id in names_in_file - {app.name}:
            raise RegistryError("already_exists", f"{where}.id: {app.id!r} is the name of another application")
        current = await store.get_application(app.id)
        owner_of_name = await store.application_id_by_name(app.name)
        if owner_of_name is not None and owner_of_name != app.id:
            raise RegistryError("already_exists", f"{where}: name {app.name!r} is used by application {owner_of_name}")
        if current is None:
            steps.append((f"create application {app.name} (id {app.id})",
                          _bind(admin.create_application, app.name, owner=app.owner, tier=app.tier, app_id=app.id)))
            if app.status is not ApplicationStatus.ACTIVE:
                steps.append((f"set application {app.name} status {app.status.value}",
                              _bind(admin.update_application, app.id, status=app.status.value)))
            existing_clients: dict[tuple[str, str], KeyType] = {}
            existing_subs: dict[str, Any] = {}
        else:
            changes = {}
            for field in ("name", "owner", "tier"):
                if getattr(current, field) != getattr(app, field):
                    changes[field] = getattr(app, field)
            if current.status is not app.status:
                changes["status"] = app.status.value
            if changes:
                listed = ", ".join(f"{k}={v!r}" for k, v in changes.items())
                steps.append((f"update application {app.id}: {listed}",
                              _bind(admin.update_application, app.id, **changes)))
            existing_clients = {(km, c): t for km, c, t in await store.clients_of(app.id)}
            existing_subs = {s.api_id: s for s in await store.subscriptions_of(app.id)}
        for c_index, client in enumerate(app.clients):
            ident = (client.key_manager, client.client_id)
            if ident in seen_clients:
                raise RegistryError("invalid", f"{where}.clients[{c_index}]: client ID {client.client_id} appears twice")
            seen_clients.add(ident)
            admin.key_manager_name(client.key_manager)
            if ident in existing_clients:
                if existing_clients[ident] is not client.key_type:
                    steps.append((f"set key type of client {client.key_manager}:{client.client_id} to {client.key_type.value}",
                                  _bind(admin.set_client_key_type, app.id, client.client_id, client.key_type.value,
                                        key_manager=client.key_manager)))
                continue
            owner = await store.client_owner(client.key_manager, client.client_id)
            if owner is not None and owner != app.id:
                other = await store.get_application(owner)
                taken = client_taken(client.client_id, client.key_manager, other.name if other else owner)
                raise RegistryError(taken.kind, f"{where}.clients[{c_index}]: {taken}")
            steps.append((f"attach client {client.key_manager}:{client.client_id} ({client.key_type.value}) to {app.name}",
                          _bind(admin.add_client, app.id, client.client_id, key_manager=client.key_manager,
                                key_type=client.key_type.value)))
        client_key_managers = {km for km, _ in existing_clients} | {c.key_manager for c in app.clients}
        for s_index, sub in enumerate(app.subscriptions):
            admin.api_id(sub.api_id)
            have = existing_subs.get(sub.api_id)
            problem = None if have else unusable_subscription(admin.settings, app.name, sub.api_id, client_key_managers)
            if problem is not None:
                raise RegistryError("failed_precondition", f"{where}.subscriptions[{s_index}]: {problem}")
            if have is None:
                steps.append((f"subscribe {app.name} to {sub.api_id} ({sub.status.value}, tier {sub.tier})",
                              _bind(admin.subscribe, app.id, sub.api_id, tier=sub.tier, status=sub.status.value)))
            elif have.status is not sub.status or have.tier != sub.tier:
                steps.append((f"update subscription of {app.name} to {sub.api_id}: {sub.status.value}, tier {sub.tier}",
                              _bind(admin.update_subscription, app.id, sub.api_id, status=sub.status.value, tier=sub.tier)))
    for r_index, rev in enumerate(doc.revocations):
        _at(f"revocations[{r_index}]", check_token_id, rev.jti)
        admin.key_manager_name(rev.key_manager)
        if rev.expires_at <= now:
            continue  # expired: the token is refused as expired anyway
        current_until = (await store.revocation(rev.key_manager, rev.jti)).expires_at
        if current_until is not None and int(current_until) == rev.expires_at:
            continue
        steps.append((f"revoke token ID {rev.jti} of {rev.key_manager} until {rev.expires_at}",
                      _bind(admin.revoke, rev.jti, rev.expires_at, key_manager=rev.key_manager, add_leeway=False)))
    return steps


async def import_yaml(admin: RegistryAdmin, text: str, *, dry_run: bool = False, source: str = "<input>") -> list[str]:
    """Validate ``text``, plan the changes and (unless ``dry_run``) apply them in order.

    Returns:
        One line per change (empty: the registry already matches the file).
    Raises:
        RegistryError: invalid document or a conflict (nothing written); or a write refused midway
            (a concurrent change: the steps before it are applied, re-running the import finishes the job).
    """
    steps = await plan_import(admin, parse_document(text, source))
    if not dry_run:
        for _, action in steps:
            await action()
    return [description for description, _ in steps]


def _at(where: str, check: Callable[..., None], *args: Any) -> None:
    """Run a field check, prefixing its error with the document path."""
    try:
        check(*args)
    except RegistryError as exc:
        raise RegistryError(exc.kind, f"{where}: {exc}", getattr(exc, "field", None)) from None


def _bind(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Callable[[], Awaitable[Any]]:
    return lambda: fn(*args, **kwargs)
