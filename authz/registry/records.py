"""Decoding of the registry's stored records into model values, with a precise error for a malformed one."""

from __future__ import annotations

import json
from typing import Any

from authz.model import Application, ApplicationStatus, Subscription, SubscriptionStatus
from authz.registry.store import CorruptRecord


def decode_enum(cls: type, value: Any, key: str, field: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise CorruptRecord(key, f"field '{field}' has the unknown value {str(value)[:40]!r}") from None


def decode_float(value: Any, key: str, field: str) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        raise CorruptRecord(key, f"field '{field}' is not a number") from None


def decode_application(app_id: str, fields: dict[str, Any], key: str) -> Application:
    """Build an :class:`Application` from its hash fields.

    Raises:
        CorruptRecord: a field is missing or has an unknown value.
    """
    for required in ("name", "status"):
        if not fields.get(required):
            raise CorruptRecord(key, f"field '{required}' is missing")
    return Application(
        id=app_id,
        name=fields["name"],
        owner=fields.get("owner") or "",
        tier=fields.get("tier") or "Unlimited",
        status=decode_enum(ApplicationStatus, fields["status"], key, "status"),
        created_at=decode_float(fields.get("created_at"), key, "created_at"),
    )


def decode_subscription(app_id: str, api_id: str, raw: str, key: str) -> Subscription:
    """Build a :class:`Subscription` from its JSON document.

    Raises:
        CorruptRecord: not a JSON object, or ``status`` missing or unknown.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise CorruptRecord(key, f"subscription to {api_id!r} is not valid JSON") from None
    if not isinstance(doc, dict) or "status" not in doc:
        raise CorruptRecord(key, f"subscription to {api_id!r} has no 'status'")
    return Subscription(
        application_id=app_id,
        api_id=api_id,
        status=decode_enum(SubscriptionStatus, doc["status"], key, f"{api_id}.status"),
        tier=str(doc.get("tier") or "Unlimited"),
        created_at=decode_float(doc.get("created_at"), key, f"{api_id}.created_at"),
    )
