"""The processes of the fault suite: ``authz serve`` (one worker or a supervisor of several), real Envoys in front of
it, the echo upstream, a controllable key manager; the token mixes the scenarios send.

Real processes on loopback only. Every ``authz serve`` runs from the worktree (``python -m authz`` with the test
run's working directory), and without an inherited ``AUTHZ_LISTEN``.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from authz.dev.keymanager import DEMO_USERS, KeyManager, SigningKey
from authz.dev.procs import ManagedProcess, start_envoy
from authz.ops.envoy_proto import AUTHZ_CLUSTER, AUTHZ_HTTP_CLUSTER
from authz.ops.health import wait_serving
from authz.ops.supervisor import worker_listen
from tests.faults.load import Shot
from tests.support.config import AUDIENCE, free_consecutive_ports, settings_dict
from tests.support.e2e import CLIENTS, write_gateway_config
from tests.support.processes import children
from tests.support.registry import run_admin
from tests.support.tokencraft import claims, sign

ATTACKER = SigningKey.generate_rsa(kid="attacker")


def key_manager(kid: str = "k1") -> KeyManager:
    """A started key manager (the test clients and users) signing with a fresh RSA key ``kid``; its JWKS answers
    carry no ``Cache-Control``, so authz refreshes them every ``jwks.refresh_interval`` of its config."""
    km = KeyManager(AUDIENCE, CLIENTS, DEMO_USERS, keys=[SigningKey.generate_rsa(kid=kid)])
    km.jwks_cache_control = None
    km.start()
    return km


def config_doc(km: KeyManager, redis_url: str, prefix: str, *, workers: int = 1, drain_grace: float = 0.0,
               **jwks: float) -> dict[str, Any]:
    """The authz config of a fault module: gRPC and HTTP check listeners (one port per worker each), the given
    ``jwks`` timings, ``drain_grace`` (0: a module that stops no worker under load stops its stack at once)."""
    doc = settings_dict(km, redis_url, prefix)
    doc["key_managers"][0]["jwks"].update(jwks)
    doc["server"].update(listen=f"127.0.0.1:{free_consecutive_ports()}", workers=workers,
                         http_listen=f"127.0.0.1:{free_consecutive_ports()}", http_route_headers=True)
    doc["server"]["drain_grace"] = drain_grace
    doc["redis"]["cache_ttl"] = 30
    return doc


def seed(doc: dict[str, Any]) -> None:
    """Demo App (demo-client) and Other App (other-client), both subscribed to orders-v1."""
    async def go(admin: Any) -> None:
        for app_id, client_id in (("demo-app", "demo-client"), ("other-app", "other-client")):
            await admin.create_application(app_id, owner="faults", app_id=app_id)
            await admin.add_client(app_id, client_id)
            await admin.subscribe(app_id, "orders-v1")

    run_admin(doc, go)


class Authz:
    """``authz serve`` of ``doc`` (``server.workers`` of them under a supervisor when above 1)."""

    def __init__(self, doc: dict[str, Any], tmp: Path, name: str = "authz") -> None:
        self.doc = doc
        self.config = tmp / f"{name}.yaml"
        self.write(doc)
        env = {k: v for k, v in os.environ.items() if k != "AUTHZ_LISTEN"}
        self.proc = ManagedProcess([sys.executable, "-m", "authz", "serve", "--config", str(self.config),
                                    "--log-level", "info"], name=name, log_dir=tmp, env=env, inherit_env=False)

    def write(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.config.write_text(yaml.safe_dump(doc), encoding="utf-8")

    @property
    def workers(self) -> list[str]:
        """The gRPC listen address of each worker."""
        return [worker_listen(self.doc["server"]["listen"], i) for i in range(self.doc["server"]["workers"])]

    def start(self, wait: bool = True) -> Authz:
        self.proc.start()
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout: float = 30) -> None:
        for where in self.workers:
            wait_serving(where, timeout=timeout)

    def worker_pids(self) -> list[int]:
        """The workers' process IDs (children of the supervisor), in no particular order."""
        return children(self.proc.pid)

    def stop(self) -> int | None:
        return self.proc.stop(timeout=20)


@dataclass
class Gateway:
    """A real Envoy in front of authz in ext_authz ``mode`` (``grpc`` or ``http``)."""

    proc: ManagedProcess
    url: str
    admin: str
    mode: str

    @property
    def cluster(self) -> str:
        return AUTHZ_CLUSTER if self.mode == "grpc" else AUTHZ_HTTP_CLUSTER

    def health_flags(self) -> list[str]:
        """The health flags of each host of authz's cluster (Envoy admin ``/clusters``)."""
        lines = httpx.get(self.admin + "/clusters", timeout=5).text.splitlines()
        return [line.rsplit("::", 1)[1] for line in lines
                if line.startswith(f"{self.cluster}::") and "::health_flags::" in line]

    def wait_healthy(self, hosts: int, timeout: float = 30) -> None:
        """Wait until Envoy sees ``hosts`` healthy authz hosts (health checked, none ejected)."""
        deadline = time.monotonic() + timeout
        while (flags := self.health_flags()) != ["healthy"] * hosts:
            assert time.monotonic() < deadline, f"authz hosts not all healthy in Envoy: {flags}"
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.stop()


def gateway(tmp: Path, doc: dict[str, Any], upstream_port: int, mode: str, name: str | None = None) -> Gateway:
    """Envoy with the ``authz envoy-config`` bootstrap of ``doc`` in ext_authz ``mode`` (every worker an endpoint)."""
    name = name or f"envoy-{mode}"
    path = tmp / f"{name}.yaml"
    listen, admin = write_gateway_config(path, doc, upstream_port, authz_mode=mode)
    (tmp / name).mkdir()
    proc = start_envoy(path, tmp / name, admin_port=admin)
    return Gateway(proc, f"http://127.0.0.1:{listen}", f"http://127.0.0.1:{admin}", mode)


@contextmanager
def serving(tmp: Path, doc: dict[str, Any], upstream_port: int, modes: tuple[str, ...] = ("http",),
            ) -> Iterator[tuple[Authz, dict[str, Gateway]]]:
    """``authz serve`` of ``doc`` (SERVING on every worker) and one Envoy per ext_authz mode in front of it, each
    Envoy seeing every worker healthy; all stopped on exit, the Envoys first.

    Yields:
        ``(authz, {mode: gateway})``.
    """
    authz = Authz(doc, tmp).start()
    gateways: dict[str, Gateway] = {}
    try:
        for mode in modes:
            gateways[mode] = gateway(tmp, doc, upstream_port, mode)
            gateways[mode].wait_healthy(doc["server"]["workers"])
        yield authz, gateways
    finally:
        for g in gateways.values():
            g.stop()
        authz.stop()


# ---- what the scenarios send ---------------------------------------------------------------------------------

def valid(km: KeyManager, client_id: str = "demo-client", **extra: Any) -> str:
    """A valid token of ``client_id`` with scope orders:read (a jti of its own)."""
    return km.issue_token(client_id, "faults", "orders:read", extra_claims=extra or None)


def forged(km: KeyManager) -> str:
    """The key manager's claims and kid, signed with a key that is not its own: 401 whatever happens."""
    return sign(ATTACKER, claims(km, "demo-client"), kid=km.signing_key.kid)


def unknown_kid(km: KeyManager) -> str:
    """What anyone can send: the issuer's claims, a kid nobody published, the attacker's key."""
    return sign(ATTACKER, claims(km, "demo-client"), kid=uuid.uuid4().hex)


def fresh_tokens(km: KeyManager, count: int) -> Callable[[], str]:
    """A supply of valid demo-client tokens, each with a jti never sent before (so each check reads Redis for its
    revocation): ``count`` signed up front, then signed on demand."""
    tokens = [valid(km) for _ in range(count)]

    def take() -> str:
        return tokens.pop() if tokens else valid(km)

    return take


def basic_mix(km: KeyManager) -> list[Shot]:
    """Valid tokens of a subscribed application, and a forged token that must be denied."""
    return [Shot("valid", valid(km)), Shot("valid", valid(km, "other-client")), Shot("forged", forged(km), True)]
