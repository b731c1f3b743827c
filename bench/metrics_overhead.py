"""What the metrics cost a warm check: authz CPU per check with metrics on and off, measured in one run.

    .venv/bin/python bench/metrics_overhead.py [--rounds 15] [--checks 20000]

In one process, over the real pipeline (a key manager serving its JWKS on loopback, the in-memory registry store:
a warm check never reads the store), it answers the same warm checks (64 tokens, every cache warm) through:

* ``servicer``: the gRPC front end's ``Check`` handler called with parsed ``CheckRequest`` messages, no transport:
  adapt, the pipeline, the rendered answer, and the decision recorder; the authz CPU of a warm check;
* ``decide``: the bare pipeline (``Pipeline.evaluate_cached``) and the recorder alone, the harshest ratio.

Setups, interleaved round by round so that drift on a shared machine hits them alike (``time.process_time``: this
process's CPU):

* ``off``: no ``server.metrics_listen``, ``logging.decisions: none`` (the recorder only reads the clock);
* ``on``: metrics counted, ``logging.decisions: none``, and the copy into the Prometheus objects
  (``MetricsUpdater.update``) once per round (a worker of several copies once a second: this overstates it);
* ``on_denies``: as ``on`` with ``logging.decisions: denies`` (the default: a warm allow is not logged);
* ``on_all``: as ``on`` with ``logging.decisions: all``, JSON lines to /dev/null (for information: logging every
  allow is not in the budget);
* ``bare``: no recording at all (the code before metrics existed; for ``servicer``, a recorder that does nothing,
  so only the front end's first clock read remains).

Writes ``bench/results/metrics-overhead-<date>.json``: per setup the microseconds per check of every round, their
minimum and median, and the ratios on/off (the budget: at most 1.10).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from authz.config import parse_config  # noqa: E402
from authz.decide.record import DecisionRecorder  # noqa: E402
from authz.dev.keymanager import KeyManager, SigningKey  # noqa: E402
from authz.envoy.grpc_service import AuthorizationServicer, adapt  # noqa: E402
from authz.keys.fetch import http_client  # noqa: E402
from authz.keys.jwks_cache import JwksCache  # noqa: E402
from authz.ops.logs import JsonFormatter  # noqa: E402
from authz.ops.metrics import Metrics, MetricSources, MetricsUpdater  # noqa: E402
from authz.ops.services import assemble_pipeline  # noqa: E402
from authz.registry.admin import RegistryAdmin  # noqa: E402
from authz.registry.cache import RegistryCache  # noqa: E402
from authz.registry.memory import MemoryStore  # noqa: E402
from bench.run import AUDIENCE, CLIENT, PATH, authz_config  # noqa: E402

SETUPS = {"off": (False, "none"), "on": (True, "none"), "on_denies": (True, "denies"), "on_all": (True, "all")}


class NoRecorder(DecisionRecorder):
    """Records nothing: the front end as it was before decisions were counted and logged."""

    __slots__ = ()

    def allowed(self, check: Any, started: float) -> None:
        pass

    def denied(self, check: Any, denial: Any, started: float, phase: str = "") -> None:
        pass


def message(token: str) -> CheckRequest:
    """The CheckRequest Envoy sends for ``GET /orders/v1/items`` with ``token`` (as in bench/run.py)."""
    req = CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", PATH, "127.0.0.1"
    http.headers.update({":method": "GET", ":path": PATH, ":authority": "127.0.0.1", "authorization": f"Bearer {token}",
                         "user-agent": "bench", "x-request-id": "00000000-0000-0000-0000-000000000000"})
    req.attributes.context_extensions["api_id"] = "orders-v1"
    return req


def cpu_us_per_check(run: Callable[[], None], checks: int) -> float:
    """CPU microseconds of this process per check over one call of ``run`` (which answers ``checks`` checks)."""
    start = time.process_time()
    run()
    return (time.process_time() - start) / checks * 1e6


async def main(rounds: int, checks: int) -> dict[str, Any]:
    km = KeyManager(AUDIENCE, keys=[SigningKey.generate_rsa(kid="bench")])
    km.start()
    try:
        doc = authz_config(km, "redis://127.0.0.1:9/0", 9191, token_cache=True)
        # Every cache stays warm for the whole run (the registry cache's TTL is 30 s by default).
        doc["redis"].update(cache_ttl=3600)
        doc["tokens"].update(cache_max_ttl=3600)
        doc["key_managers"][0]["jwks"] = {"refresh_interval": 3600}
        settings = parse_config(doc)
        client = http_client(settings.key_managers[0])
        keys = {settings.key_managers[0].name: JwksCache(settings.key_managers[0], client)}
        await keys[settings.key_managers[0].name].refresh()
        store = MemoryStore()
        admin = RegistryAdmin(store, settings)
        await admin.create_application("Bench App", app_id="bench-app")
        await admin.add_client("bench-app", CLIENT)
        await admin.subscribe("bench-app", "orders-v1")
        registry = RegistryCache(store, settings.redis)
        pipeline = assemble_pipeline(settings, keys, registry, None)
        messages = [message(km.issue_token(CLIENT, f"user{i}", "orders:read")) for i in range(64)]
        requests = [adapt(m) for m in messages]

        decisions_log = logging.getLogger("authz.decisions")
        sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the run
        sink.setFormatter(JsonFormatter())
        decisions_log.addHandler(sink)
        decisions_log.setLevel(logging.INFO)
        decisions_log.propagate = False

        servicers, recorders, updaters = {}, {}, {}
        for name, (counting, decisions) in SETUPS.items():
            recorder = DecisionRecorder("grpc", decisions, counting)
            servicers[name] = AuthorizationServicer(pipeline, "authz", settings.server.decision_cache_size, recorder)
            recorders[name] = recorder
            updaters[name] = MetricsUpdater(Metrics(CollectorRegistry()), MetricSources([recorder], keys, registry))
        servicers["bare"] = AuthorizationServicer(pipeline, "authz", settings.server.decision_cache_size,
                                                  NoRecorder("grpc", "none", False))
        for servicer in servicers.values():  # warm every cache (token, registry, route, decision, rendered)
            for m in messages:
                assert isinstance(await servicer.Check(m, None), bytes)

        def drive(coro: Any) -> Any:
            try:
                coro.send(None)
            except StopIteration as done:
                return done.value
            raise RuntimeError("a warm check awaited something")

        def servicer_round(name: str) -> Callable[[], None]:
            servicer = servicers[name]
            updater, counting = updaters.get(name), SETUPS.get(name, (False,))[0]
            pool = len(messages)

            def run() -> None:
                check = servicer.Check
                for i in range(checks):
                    drive(check(messages[i % pool], None))
                if counting and updater is not None:
                    updater.update()
            return run

        def decide_round(name: str) -> Callable[[], None]:
            evaluate = pipeline.evaluate_cached
            pool = len(requests)
            if name == "bare":
                def run() -> None:
                    for i in range(checks):
                        evaluate(requests[i % pool])
                return run
            recorder, updater, counting = recorders[name], updaters[name], SETUPS[name][0]

            def run_recorded() -> None:
                allowed, clock = recorder.allowed, time.perf_counter
                for i in range(checks):
                    started = clock()
                    check = evaluate(requests[i % pool])
                    if check is None:
                        raise RuntimeError("a check was not answered from the caches")
                    allowed(check, started)
                if counting:
                    updater.update()
            return run_recorded

        results: dict[str, dict[str, list[float]]] = {"servicer": {n: [] for n in ["bare", *SETUPS]},
                                                      "decide": {n: [] for n in ["bare", *SETUPS]}}
        for _ in range(rounds):
            for name in results["servicer"]:
                results["servicer"][name].append(cpu_us_per_check(servicer_round(name), checks))
            for name in results["decide"]:
                results["decide"][name].append(cpu_us_per_check(decide_round(name), checks))
        await client.aclose()
    finally:
        km.stop()

    def summary(runs: list[float]) -> dict[str, Any]:
        return {"min_us": round(min(runs), 3), "median_us": round(statistics.median(runs), 3),
                "runs_us": [round(r, 3) for r in runs]}

    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "params": {"rounds": rounds, "checks_per_round": checks, "tokens": 64},
        "levels": {},
    }
    for level, setups in results.items():
        stats = {name: summary(runs) for name, runs in setups.items()}
        ratios = {}
        for name, base in (("on", "off"), ("on_denies", "off"), ("on_all", "off"), ("off", "bare"),
                           ("on", "bare"), ("on_denies", "bare")):
            ratios[f"{name}_vs_{base}"] = {
                "median": round(stats[name]["median_us"] / stats[base]["median_us"], 3),
                "min": round(stats[name]["min_us"] / stats[base]["min_us"], 3),
            }
        out["levels"][level] = {"setups": stats, "ratios": ratios}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--checks", type=int, default=20_000)
    args = parser.parse_args()
    result = asyncio.run(main(args.rounds, args.checks))
    for level, data in result["levels"].items():
        print(f"{level}:")
        for name, s in data["setups"].items():
            print(f"  {name:10s} min {s['min_us']:7.3f} us  median {s['median_us']:7.3f} us per check")
        for name, r in data["ratios"].items():
            print(f"  {name:18s} median {r['median']:.3f}  min {r['min']:.3f}")
    path = ROOT / "bench" / "results" / f"metrics-overhead-{dt.datetime.now(dt.UTC):%Y-%m-%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")
