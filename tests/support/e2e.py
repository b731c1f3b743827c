"""End-to-end test support: the stack of processes a test drives through real Envoy, and small helpers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from authz.config import parse_config
from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey
from authz.dev.procs import ManagedProcess, RedisServer, free_port, start_envoy
from authz.dev.upstream import EchoUpstream
from authz.ops.envoy_clusters import cluster_name
from authz.ops.envoy_config import EnvoyOptions, build_bootstrap, render_yaml
from authz.ops.envoy_proto import HostPort, to_dict
from authz.ops.envoy_routes import RoutePlan, route
from authz.registry.admin import RegistryAdmin
from tests.support.config import AUDIENCE, settings_dict
from tests.support.processes import AuthzProcess
from tests.support.registry import run_admin


def json_body(r: httpx.Response) -> dict:
    """The JSON body of an authz answer, after checking its content type."""
    assert r.headers["content-type"] == "application/json"
    return r.json()


def drop_keys(redis_server: RedisServer, prefix: str) -> None:
    """Delete every key under ``prefix`` (a module's registry) from the session's redis-server."""
    client = redis_server.client()
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


CLIENTS = {**DEMO_CLIENTS, "blocked-client": "blocked-secret"}


@dataclass
class Stack:
    """The processes of one end-to-end module: key manager, upstream, authz, Envoy."""

    km: KeyManager
    upstream: EchoUpstream
    authz: AuthzProcess
    envoy: ManagedProcess
    gateway: str
    doc: dict
    tmp: Path
    mode: str = "grpc"

    def token(self, client_id: str = "demo-client", scope: str = "orders:read", **claims: object) -> str:
        return self.km.issue_token(client_id, "demo", scope, extra_claims=claims or None)

    def get(self, path: str, token: str | None = None, headers: dict[str, str] | None = None,
            method: str = "GET", gateway: str | None = None) -> httpx.Response:
        """One HTTP call through Envoy (``gateway``: another Envoy's base URL), with the token if given."""
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        return httpx.request(method, (gateway or self.gateway) + path, headers=h, timeout=5)

    def admin(self, action):  # noqa: ANN001, ANN201
        return run_admin(self.doc, action)


def seed(admin: RegistryAdmin):  # noqa: ANN202
    async def go() -> None:
        for app_id, name, client_id, apis in (
            ("demo-app", "Demo App", "demo-client", ["orders-v1"]),
            ("other-app", "Other App", "other-client", []),
            ("blocked-app", "Blocked App", "blocked-client", ["orders-v1"]),
        ):
            await admin.create_application(name, owner="e2e", app_id=app_id)
            # the stack's own key manager, the first (a module may configure more)
            await admin.add_client(app_id, client_id, key_manager=admin.settings.key_managers[0].name)
            for api in apis:
                await admin.subscribe(app_id, api)
        await admin.set_subscription_status("blocked-app", "orders-v1", "BLOCKED")

    return go()




MODES = ("grpc", "http")
"""Envoy's two ext_authz modes: ``grpc_service`` to ``server.listen``, ``http_service`` to ``server.http_listen``."""


def listen_http(doc: dict[str, Any]) -> None:
    """Give the authz config document an HTTP ext_authz listener (``server.http_listen``) on a free port, reading
    the route headers the generated HTTP-mode Envoy sets (``server.http_route_headers``), as a deployment
    behind ``authz envoy-config --authz-mode http`` does."""
    doc["server"]["http_listen"] = f"127.0.0.1:{free_port()}"
    doc["server"]["http_route_headers"] = True


def mode_gateway(
    tmp: Path, doc: dict[str, Any], upstream_port: int, mode: str, *, failure_mode_allow: bool = False,
    **options: Any,
) -> tuple[ManagedProcess, str]:
    """A real Envoy in ext_authz ``mode`` (``grpc`` or ``http``) in front of the authz of config ``doc``
    (``options``: further :func:`write_gateway_config` options)."""
    name = f"envoy-{mode}{'-failopen' if failure_mode_allow else ''}"
    return start_gateway(tmp, name, doc, upstream_port, authz_mode=mode, failure_mode_allow=failure_mode_allow,
                         **options)


@contextmanager
def http_mode_view(grpc_stack: Stack, **options: Any) -> Iterator[Stack]:
    """The processes of ``grpc_stack`` (whose authz also listens for HTTP mode: :func:`listen_http`) seen through a
    second Envoy, in HTTP ext_authz mode (``options``: as the gRPC one's); that Envoy is stopped on exit."""
    envoy, gateway = mode_gateway(grpc_stack.tmp, grpc_stack.doc, grpc_stack.upstream.port, "http", **options)
    try:
        yield dataclasses.replace(grpc_stack, envoy=envoy, gateway=gateway, mode="http")
    finally:
        envoy.stop()


def write_gateway_config(path: Path, doc: dict[str, Any], upstream_port: int, *,
                         extra_routes: Sequence[RoutePlan] = (), **options: Any) -> tuple[int, int]:
    """Write the ``authz envoy-config`` bootstrap of the config document ``doc`` (target ``local``: authz's
    ``server.listen``, or ``server.http_listen`` in HTTP mode) on free listener and admin ports, every API
    forwarding to the echo upstream on ``upstream_port``.

    Args:
        extra_routes: routes the generator would not make (e.g. an API named on a path outside its context),
            each built by :func:`authz.ops.envoy_routes.route` for the mode and put first in the ``*`` virtual
            host; a route without ``cluster`` forwards to the echo upstream.
        options: further :class:`authz.ops.envoy_config.EnvoyOptions` fields (``authz_mode``,
            ``failure_mode_allow``, ``tier_limits``, ``routed_apis``...).
    Returns:
        ``(listener port, admin port)``.
    """
    listen, admin = free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    config = EnvoyOptions(listen=HostPort("127.0.0.1", listen), admin=HostPort("127.0.0.1", admin),
                          default_upstream=upstream, **options)
    text = render_yaml(build_bootstrap(parse_config(doc), config), "tests")
    if extra_routes:
        bootstrap = yaml.safe_load(text)
        [chain] = bootstrap["static_resources"]["listeners"][0]["filter_chains"]
        [anywhere] = [v for v in chain["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
                      if v["domains"] == ["*"]]
        anywhere["routes"][:0] = [
            to_dict(route(dataclasses.replace(plan, cluster=plan.cluster or cluster_name(upstream)),
                          http_mode=config.authz_mode == "http")) for plan in extra_routes]
        text = yaml.safe_dump(bootstrap, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return listen, admin


def start_gateway(tmp: Path, name: str, doc: dict[str, Any], upstream_port: int,
                  **options: Any) -> tuple[ManagedProcess, str]:
    """A real Envoy with the :func:`write_gateway_config` bootstrap of ``doc``; returns the process and its
    ``http://127.0.0.1:PORT`` base URL."""
    path = tmp / f"{name}.yaml"
    listen, admin = write_gateway_config(path, doc, upstream_port, **options)
    log_dir = tmp / name
    log_dir.mkdir()
    return start_envoy(path, log_dir, admin_port=admin), f"http://127.0.0.1:{listen}"


@contextmanager
def running_stack(
    redis_server: RedisServer, tmp: Path, prefix: str, kid: str,
    gateway: Callable[[Path, dict[str, Any], int], tuple[ManagedProcess, str]],
    configure: Callable[[dict[str, Any]], None] = lambda doc: None,
    seeding: Callable[[RegistryAdmin], Any] = seed, clients: dict[str, str] = CLIENTS,
) -> Iterator[Stack]:
    """Key manager, echo upstream, seeded registry, ``authz serve`` and Envoy, stopped in reverse order.

    Args:
        redis_server: the session's redis-server; the registry lives under ``prefix`` and is dropped after.
        tmp: the module's temporary directory.
        prefix: registry key prefix of this module.
        kid: the key manager's signing key ID.
        gateway: starts Envoy for ``(tmp, authz config document, upstream port)``.
        configure: edits the authz config document before authz starts.
        seeding: puts the module's applications in the registry (default :func:`seed`).
        clients: the key manager's OAuth2 clients (ID -> secret).
    """
    km = KeyManager(AUDIENCE, clients, DEMO_USERS, keys=[SigningKey.generate_rsa(kid=kid)])
    km.start()
    upstream = EchoUpstream()
    upstream.start()
    doc = settings_dict(km, redis_server.url, prefix)
    doc["redis"]["cache_ttl"] = 30
    configure(doc)
    authz = AuthzProcess(doc, tmp)
    stack = Stack(km, upstream, authz, None, "", doc, tmp)  # type: ignore[arg-type]
    try:
        stack.admin(seeding)
        authz.start()
        stack.envoy, stack.gateway = gateway(tmp, doc, upstream.port)
        yield stack
    finally:
        if stack.envoy is not None:
            stack.envoy.stop()
        authz.stop()
        upstream.stop()
        km.stop()
        drop_keys(redis_server, prefix)
