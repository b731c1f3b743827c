"""Command line: ``authz serve | check-config | health | envoy-config | explain | registry ... | dev ...``.

Each group of subcommands has its module (``authz registry``: :mod:`authz.ops.cli_registry`, ``authz
envoy-config``: :mod:`authz.ops.cli_envoy`, ``authz explain``: :mod:`authz.ops.cli_explain`); exit statuses are
those of :mod:`authz.ops.cli_support` (``explain`` has its own).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from authz.config import ConfigError, load_servable, serving_errors
from authz.ops import cli_envoy, cli_explain, cli_registry
from authz.ops.cli_support import DEFAULT_CONFIG, load, run, setup_logging


def cmd_serve(args: argparse.Namespace) -> int:
    """``authz serve --config FILE [--workers N]``: run the gRPC server until SIGTERM/SIGINT.

    With one worker the server runs in this process; with more, a supervisor runs them as child processes
    on consecutive ports (see :mod:`authz.ops.supervisor`). SIGHUP reloads the config in every case: it is
    blocked from here until the process can act on it (:func:`authz.ops.server.serve`, :meth:`Supervisor.run`
    unblock it), so a SIGHUP sent while authz starts (say, during a slow JWKS prefetch) is a reload once serving,
    not the default action that kills the process.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    from authz.ops.reload import fingerprint  # noqa: PLC0415
    from authz.ops.server import serve  # noqa: PLC0415
    from authz.ops.supervisor import Supervisor, default_workers, worker_command  # noqa: PLC0415

    setup_logging(args.log_level)
    loaded = fingerprint(args.config)  # before reading: a change made in between is reloaded once serving
    settings = load(args.config)
    setup_logging(args.log_level, settings.logging.format)
    problems = serving_errors(settings)
    if problems:
        print(f"{args.config}: cannot serve:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    workers = args.workers if args.workers is not None else settings.server.workers
    if args.worker_index is not None or workers == 1:
        return run(serve(settings, primary=args.worker_index in (None, 0), worker_index=args.worker_index or 0,
                         supervised=args.worker_index is not None, config_path=args.config, loaded=loaded))
    from authz.ops.metrics_http import SupervisedMetrics, envoy_mode  # noqa: PLC0415

    listen = settings.server.metrics_listen
    supervisor = Supervisor(
        worker_command(args.config, args.log_level),
        settings.server.listen,
        workers or default_workers(),
        grace_period=settings.server.drain_grace + settings.server.grace_period,
        reloaded_grace=lambda: _stop_time(args.config),
        metrics=SupervisedMetrics(listen, envoy_mode(settings)) if listen is not None else None,
    )
    return supervisor.run()


def _stop_time(config: str) -> float | None:
    """``server.drain_grace + server.grace_period`` of the config file now; None when it is invalid (the workers
    then keep their running config too)."""
    try:
        server = load_servable(config).server
    except ConfigError:
        return None
    return server.drain_grace + server.grace_period


def cmd_check_config(args: argparse.Namespace) -> int:
    """``authz check-config FILE``: print every error with its YAML path; 1 if any, else 0."""
    try:
        settings = load_servable(args.file)
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        print(f"{args.file}: {len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    print(
        f"{args.file}: valid ({len(settings.key_managers)} key manager(s), {len(settings.apis)} API(s), "
        f"listen {settings.server.listen})"
    )
    return 0


def health_address(listen: str) -> str:
    """The address ``authz health`` calls for a ``server.listen`` value: a wildcard host (``0.0.0.0``, ``::``)
    becomes loopback, the address a process reaches its own listener on."""
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"{host}:{port}"


def cmd_health(args: argparse.Namespace) -> int:
    """``authz health [--address HOST:PORT] [--service NAME]``: 0 when authz's ``grpc.health.v1.Health`` answers
    SERVING (for ``NAME``, e.g. ``authz.durability``), else 1 with the status seen.

    Without ``--address`` it calls the ``server.listen`` of the config (``--config``, ``$AUTHZ_CONFIG``, with
    ``AUTHZ_LISTEN`` applied) on loopback: the container image's ``HEALTHCHECK``.
    """
    from authz.ops.health import status  # noqa: PLC0415

    target = args.address or health_address(load(args.config).server.listen)
    answer = status(target, timeout=args.timeout, service=args.service)
    if answer == "SERVING":
        print(f"{target}{' ' + args.service if args.service else ''}: SERVING")
        return 0
    if args.service:  # a named service: say which status (authz.durability: see docs/operations.md#durability)
        print(f"{target} {args.service}: {answer or f'no answer within {args.timeout:g}s'}", file=sys.stderr)
        return 1
    print(f"{target}: not serving (NOT_SERVING, unreachable or no answer within {args.timeout:g}s)", file=sys.stderr)
    return 1


def cmd_dev_stack(args: argparse.Namespace) -> int:
    """``authz dev stack``: the local demo stack (see :mod:`authz.dev.stack`)."""
    from authz.dev.stack import run_stack  # noqa: PLC0415

    setup_logging(args.log_level)
    return run_stack(args.config, smoke_only=args.smoke_only, run_dir=Path(args.run_dir), authz_mode=args.authz_mode)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``authz`` command."""
    parser = argparse.ArgumentParser(prog="authz", description="Envoy external authorization service")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gRPC ext_authz server")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: $AUTHZ_CONFIG, else config/authz.yaml)")
    p.add_argument("--log-level", default=os.environ.get("AUTHZ_LOG_LEVEL", "info"))
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes, one port each from server.listen's port up (default: server.workers, "
                        "1 unless set; 0: one per CPU)")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate a config file and print every error")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("health", help="exit 0 when authz's gRPC health service answers SERVING, else 1")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="authz's gRPC address (default: the config's server.listen, on loopback)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="config read for server.listen without --address")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds for the call (default: %(default)s)")
    p.add_argument("--service", default="", metavar="NAME",
                   help="the health service to ask (default: the server as a whole); authz.durability: whether "
                        "acknowledged registry writes are safe (SERVING, NOT_SERVING or UNKNOWN)")
    p.set_defaults(func=cmd_health)

    cli_envoy.add_parser(sub)
    cli_explain.add_parser(sub)
    cli_registry.add_parser(sub)

    dev = sub.add_parser("dev", help="development aids").add_subparsers(dest="dev_command", required=True)
    p = dev.add_parser("stack", help="run Redis, a demo key manager, an echo upstream, authz and Envoy")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--log-level", default="warning")
    p.add_argument("--smoke-only", action="store_true", help="run the smoke demo, then stop the stack")
    p.add_argument("--run-dir", default=".run", help="Redis data, key manager key and logs (default: %(default)s)")
    p.add_argument("--authz-mode", choices=("http", "grpc"), default="http",
                   help="Envoy's ext_authz mode: http_service to server.http_listen or grpc_service to server.listen "
                        "(default: %(default)s)")
    p.set_defaults(func=cmd_dev_stack)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``authz`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
