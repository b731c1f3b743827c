"""Where the cost of a Python gRPC ext_authz call goes: no-op servers of each kind, behind Envoy and direct.

    .venv/bin/python bench/grpc_floor.py [--duration 8] [--repeat 2] [--rate 200]

Each server answers OK without deciding anything (``bench/noop_server.py``, ``bench/noop_http_server.py``):

- ``aio``: grpc.aio on uvloop (what authz serves); ``aio_ee_on`` / ``aio_ee_off``: the same with grpc's
  EventEngine experiments forced on / off (``GRPC_EXPERIMENTS``);
- ``sync``: grpc's synchronous server (thread pool);
- ``h2``: an asyncio HTTP/2 server on the ``h2`` library for this one unary method (no grpc);
- ``http``: Envoy's HTTP ext_authz mode to a bare asyncio HTTP/1.1 protocol (the HTTP mode's floor).

For each: the open-loop latency (p50/p99) at ``--rate`` requests/s through Envoy and straight from h2load, and
the saturated requests/s through Envoy (wrk) with the server's CPU microseconds per call. Writes
``bench/results/grpc-floor-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from authz.dev.procs import ManagedProcess, free_port, start_envoy  # noqa: E402
from bench.run import PATH, WRK_SCRIPT, cpu_seconds, envoy_bootstrap, grpc_body, median_run, run_rate, run_wrk  # noqa: E402

DEMO_CONFIG = yaml.safe_load((ROOT / "config/authz.yaml").read_text())
"""The authz config the Envoy bootstraps are generated from (its APIs; the no-op servers decide nothing)."""
EE = ("event_engine_listener", "event_engine_client", "event_engine_for_all_other_endpoints",
      "event_engine_callback_cq", "event_engine_dns")
SERVERS = {
    "aio": (["bench/noop_server.py"], {}),
    "aio_ee_on": (["bench/noop_server.py"], {"GRPC_EXPERIMENTS": ",".join(EE)}),
    "aio_ee_off": (["bench/noop_server.py"], {"GRPC_EXPERIMENTS": ",".join("-" + e for e in EE)}),
    "sync": (["bench/noop_server.py", "--mode", "sync"], {}),
    "h2": (["bench/noop_server.py", "--mode", "h2"], {}),
    "http": (["bench/noop_http_server.py"], {}),
}


def direct_rate(port: int, http: bool, body: Path, log: Path, *, rate: float, duration: int) -> dict:
    """Open-loop load straight at the server (h2load ``--rps``, 4 clients): p50/p99 in ms."""
    clients = 4
    cmd = ["h2load", "-c", str(clients), "--rps", f"{rate / clients:.2f}", "-D", str(duration), f"--log-file={log}"]
    if http:
        cmd += ["--h1", f"http://127.0.0.1:{port}{PATH}"]
    else:
        cmd += ["-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body),
                f"http://127.0.0.1:{port}/envoy.service.auth.v3.Authorization/Check"]
    subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60)
    times = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip())
    return {"requests": len(times), "p50_ms": times[len(times) // 2] / 1000, "p99_ms": times[int(len(times) * .99)] / 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", type=lambda v: v.split(","), default=list(SERVERS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="authz-grpc-floor-"))
    (tmp / "tokens.txt").write_text("x\n")
    (tmp / "tokens.lua").write_text(WRK_SCRIPT)
    body = tmp / "check.bin"
    body.write_bytes(grpc_body("x"))
    procs: list[ManagedProcess] = []
    servers: dict[str, tuple[ManagedProcess, int, int]] = {}
    runs: dict[str, list[dict]] = {}
    try:
        for name in args.servers:
            script, env = SERVERS[name]
            port = free_port()
            proc = ManagedProcess([sys.executable, *[str(ROOT / script[0]), *script[1:]], str(port)],
                                  {**os.environ, **env}, name=name, log_dir=tmp).start()
            procs.append(proc)
            proc.wait_port("127.0.0.1", port)
            listen, admin = free_port(), free_port()
            path = tmp / f"envoy-{name}.yaml"
            cfg = envoy_bootstrap(DEMO_CONFIG, listen, admin, authz_port=port, http_mode=name == "http")
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            procs.append(start_envoy(path, tmp / f"envoy-{name}", admin_port=admin, log_level="error"))
            servers[name] = (proc, port, listen)
            run_wrk(f"http://127.0.0.1:{listen}", tmp / "tokens.txt", tmp / "tokens.lua", duration=2,
                    connections=args.connections, threads=1)
        for _ in range(args.repeat):
            for name, (proc, port, listen) in servers.items():
                cpu0 = cpu_seconds(proc.pid)
                result = run_wrk(f"http://127.0.0.1:{listen}", tmp / "tokens.txt", tmp / "tokens.lua",
                                 duration=args.duration, connections=args.connections, threads=1)
                result["server_cpu_us_per_call"] = round((cpu_seconds(proc.pid) - cpu0) * 1e6 / result["requests"], 1)
                result["via_envoy"] = run_rate(listen, "x", tmp / f"{name}-rate.log", rate=args.rate,
                                               duration=args.duration)
                result["direct"] = direct_rate(port, name == "http", body, tmp / f"{name}-direct.log", rate=args.rate,
                                               duration=args.duration)
                runs.setdefault(name, []).append(result)
                print(f"{name:11s} {result['rps']:8.0f} req/s  cpu/call {result['server_cpu_us_per_call']:6.1f} us  "
                      f"at {args.rate:.0f} req/s via Envoy p50 {result['via_envoy']['p50_ms']:.2f} "
                      f"p99 {result['via_envoy']['p99_ms']:.2f} ms, direct p50 {result['direct']['p50_ms']:.2f} "
                      f"p99 {result['direct']['p99_ms']:.2f} ms", flush=True)
    finally:
        for proc in procs:
            proc.stop()
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "params": vars(args) | {"out": str(args.out)},
        "servers": {name: median_run(r) for name, r in runs.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"grpc-floor-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
