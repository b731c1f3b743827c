"""The demo stack's registry seeding (`make run`): idempotent, and it undoes earlier sessions' changes."""

from __future__ import annotations

from collections.abc import Callable

from authz.config import Settings
from authz.dev.stack import seed_registry, tamper_signature
from tests.support.registry import registry_admin


async def _state(settings: Settings) -> dict[str, object]:
    async with registry_admin(settings) as admin:
        return {
            v.application.name: (
                v.application.status.value,
                [c[1] for c in v.clients],
                {s.api_id: s.status.value for s in v.subscriptions},
            )
            for v in await admin.list_applications()
        }


DOCUMENTED = {
    "Demo App": ("ACTIVE", ["demo-client"], {"orders-v1": "ACTIVE"}),
    "Other App": ("ACTIVE", ["other-client"], {}),
}


async def test_seeding_creates_the_documented_demo_registry(make_redis_settings: Callable[..., Settings]) -> None:
    settings = make_redis_settings()
    lines = await seed_registry(settings)
    assert "created application 'Demo App' (id demo-app)" in lines
    assert "subscribed 'Demo App' to orders-v1" in lines
    assert await _state(settings) == DOCUMENTED
    assert await seed_registry(settings) == []  # idempotent: nothing to change the second time


async def test_seeding_puts_back_what_an_earlier_session_changed(make_redis_settings: Callable[..., Settings]) -> None:
    settings = make_redis_settings()
    await seed_registry(settings)
    async with registry_admin(settings) as admin:
        await admin.set_subscription_status("Demo App", "orders-v1", "BLOCKED")
        await admin.subscribe("Demo App", "payments-v1")
        await admin.set_application_status("Other App", "INACTIVE")
    lines = await seed_registry(settings)
    assert "set 'Demo App''s subscription to orders-v1 back to ACTIVE (demo reset)" in lines
    assert "removed 'Demo App''s subscription to payments-v1 (demo reset)" in lines
    assert "reactivated 'Other App'" in lines
    assert await _state(settings) == DOCUMENTED


def test_tampered_signature_differs_in_exactly_one_signature_character() -> None:
    token = "aGVhZA.cGF5bG9hZA.c2lnbmF0dXJlYnl0ZXM"
    tampered = tamper_signature(token)
    assert tampered.split(".")[:2] == token.split(".")[:2]
    diffs = [i for i, (a, b) in enumerate(zip(token, tampered, strict=True)) if a != b]
    assert len(diffs) == 1
