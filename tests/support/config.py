"""Config documents for tests: one key manager on loopback, the demo APIs, fast JWKS timings."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml

from authz.dev.keymanager import KeyManager
from authz.dev.procs import free_port

AUDIENCE = "authz-test"
NO_REDIS = "redis://127.0.0.1:9/0"
"""The Redis URL of settings whose test never reaches Redis (port 9, discard: nothing answers there)."""


def settings_dict(idp: KeyManager, redis_url: str = NO_REDIS, prefix: str = "t:", **overrides: Any) -> dict[str, Any]:
    """A config document for tests: one key manager (``idp``), the demo APIs, fast JWKS timings.

    Args:
        idp: the key manager (its issuer, JWKS URL and audience).
        redis_url: the registry's Redis (default :data:`NO_REDIS`, for tests that never reach it).
        prefix: the registry key prefix.
        overrides: replace top-level sections; ``km`` updates the key manager entry.
    """
    km = {
        "name": "test-km",
        "issuer": idp.issuer,
        "jwks_uri": f"{idp.url}/oauth2/jwks",
        "audiences": [AUDIENCE],
        "algorithms": ["RS256", "PS256", "ES256", "EdDSA"],
        "leeway": 60,
        "jwks": {"refresh_interval": 300, "kid_refetch_cooldown": 30, "timeout": 2, "retry_interval": 0.2},
    }
    km.update(overrides.pop("km", {}))
    doc: dict[str, Any] = {
        # No drain grace: tests stop authz with SIGTERM and no Envoy health check has to notice it first.
        "server": {"listen": f"127.0.0.1:{free_port()}", "decision_timeout": 2.0, "grace_period": 2, "workers": 1,
                   "drain_grace": 0},
        "redis": {"url": redis_url, "key_prefix": prefix, "socket_timeout": 0.5},
        "key_managers": [km],
        # Without the demo's fixed upstream: each test's gateway forwards to its own echo upstream (the default
        # upstream of tests.support.e2e.start_gateway).
        "apis": [{k: v for k, v in api.items() if k != "upstream"}
                 for api in yaml.safe_load(Path("config/authz.yaml").read_text())["apis"]],
    }
    doc.update(overrides)
    return doc


def free_consecutive_ports() -> int:
    """A free loopback port whose next port is free too (``authz serve --workers 2`` listens on both)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
