"""Memory of one authz worker with full caches: RSS with N cached tokens and N applications.

    .venv/bin/python bench/memory.py [--count 100000] [--front pipeline|http]

Builds the real services (``authz.ops.services.build_services``) against a real redis-server holding ``count``
applications (each with its client ID and a subscription), then validates ``count`` distinct tokens (ES256,
one per client ID) through the pipeline so that the verified-token cache, the registry cache, the revocation
cache and the decision memo are all full. Prints and writes ``bench/results/memory-<date>.json`` with the
process RSS (from /proc/self/status) before and after, and the size of each cache. Every cache is bounded by
config: the sizes here are set to ``count``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from authz.config import parse_config  # noqa: E402
from authz.dev.keymanager import KeyManager, SigningKey  # noqa: E402
from authz.dev.procs import RedisServer, free_port  # noqa: E402
from authz.envoy.http_service import HttpAuthorizationHandler  # noqa: E402
from authz.http1 import Answer  # noqa: E402
from authz.model import Allow, Request  # noqa: E402
from authz.ops.services import build_services  # noqa: E402
from bench.run import authz_config  # noqa: E402


def rss_mib() -> float:
    """Resident set size of this process in MiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def seed_many(redis_url: str, prefix: str, count: int) -> None:
    """``count`` applications with client IDs ``c{i}`` subscribed to orders-v1, written with pipelined
    commands in the documented layout (docs/registry.md), since one Lua call per write would take minutes."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    sub = json.dumps({"status": "ACTIVE", "tier": "Unlimited", "created_at": time.time()})
    for start in range(0, count, 5000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + 5000, count)):
            app = f"app-{i}"
            pipe.hset(f"{prefix}app:{app}", mapping={"name": f"App {i}", "owner": "bench", "tier": "Gold",
                                                     "status": "ACTIVE", "created_at": "0"})
            pipe.set(f"{prefix}app-name:App {i}", app)
            pipe.sadd(f"{prefix}apps", app)
            pipe.hset(f"{prefix}client:demo:c{i}", mapping={"app_id": app, "key_type": "PRODUCTION"})
            pipe.sadd(f"{prefix}app:{app}:clients", f"demo:c{i}")
            pipe.hset(f"{prefix}app:{app}:subs", "orders-v1", sub)
        await pipe.execute()
    await client.set(f"{prefix}schema", "1")
    await client.aclose()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--front", choices=("pipeline", "http"), default="pipeline",
                        help="fill through the pipeline, or through the HTTP front end (its rendered answers too)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()
    n = args.count

    redis = RedisServer().start()
    key = SigningKey.generate_ec(kid="mem")
    km = KeyManager("authz-bench", {}, {}, keys=[key])
    km.start()
    try:
        doc = authz_config(km, redis.url, free_port(), token_cache=True)
        doc["key_managers"][0]["algorithms"] = ["ES256"]
        doc["tokens"] = {"cache_size": n, "cache_max_ttl": 3600}
        doc["redis"].update(cache_size=n, cache_ttl=3600)
        settings = parse_config(doc)
        await seed_many(redis.url, "bench:", n)
        print(f"generating {n} tokens...", flush=True)
        tokens = [km.issue_token(f"c{i}", f"user-{i}", "orders:read") for i in range(n)]
        services = await build_services(settings)
        base = rss_mib()
        started = time.perf_counter()
        allowed = 0
        handler = HttpAuthorizationHandler(services.pipeline, "authz", n, route_headers=True)
        for i, token in enumerate(tokens):
            if args.front == "http":  # through the HTTP front end: its rendered answers are kept too
                answer = handler("GET", "/orders/v1/items", [
                    (b"host", b"api.test"), (b"authorization", f"Bearer {token}".encode()),
                    (b"x-request-id", str(i).encode()), (b"x-authz-api-id", b"orders-v1")])
                answer = answer if isinstance(answer, Answer) else await answer
                allowed += answer.status == 200
                continue
            outcome = await services.pipeline.decide(Request(
                "GET", "/orders/v1/items", "api.test", {"authorization": f"Bearer {token}", "x-request-id": str(i)},
                {"api_id": "orders-v1"}))
            allowed += isinstance(outcome, Allow)
        filled = time.perf_counter() - started
        after = rss_mib()
        report = {
            "count": n,
            "allowed": allowed,
            "rss_mib_before": round(base, 1),
            "rss_mib_after": round(after, 1),
            "rss_mib_per_1000_entries": round((after - base) / n * 1000, 3),
            "front": args.front,
            "cached_tokens": next(p for p in services.pipeline.phases if p.name == "identity").tokens.cached_tokens,
            "seconds_to_fill": round(filled, 1),
        }
        await services.close()
    finally:
        km.stop()
        redis.cleanup()
    print(json.dumps(report, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"memory-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out}")
    return 0 if allowed == n else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
