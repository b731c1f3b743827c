"""``authz envoy-config``: write the Envoy bootstrap that goes with an authz config (:mod:`authz.ops.envoy_config`).

    authz envoy-config --config authz.yaml [--target local|compose|kubernetes] [--authz-mode grpc|http]
        [--listen HOST:PORT] [--admin HOST:PORT] [--authz HOST:PORT]... [--upstream URL]
        [--tier-limit TIER=RPM]... [--no-tier-limits] [--out FILE]

The file starts with a comment holding the command that regenerates it; the committed ``envoy/*.yaml`` and
``deploy/*/envoy.yaml`` are checked against it by the tests.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from authz.ops.cli_support import DEFAULT_CONFIG, load


def _host_port(text: str):  # noqa: ANN202 - argparse type
    from authz.ops.envoy_proto import HostPort  # noqa: PLC0415

    try:
        return HostPort.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _upstream(text: str) -> str:
    from authz.config.apis import upstream_url  # noqa: PLC0415

    try:
        return upstream_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tier_limit(text: str) -> tuple[str, int]:
    tier, sep, limit = text.partition("=")
    if not sep or not tier or not limit.isdigit() or int(limit) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not TIER=REQUESTS_PER_MINUTE (a positive integer)")
    return tier, int(limit)


def command_line(args: argparse.Namespace) -> str:
    """The canonical ``authz envoy-config ...`` command line of ``args`` (written in the file's header)."""
    argv = ["authz", "envoy-config", "--config", args.config, "--target", args.target]
    if args.authz_mode != "grpc":
        argv += ["--authz-mode", args.authz_mode]
    for flag, value in (("--listen", args.listen), ("--admin", args.admin), ("--upstream", args.upstream)):
        if value is not None:
            argv += [flag, str(value)]
    for endpoint in args.authz or ():
        argv += ["--authz", str(endpoint)]
    for tier, limit in args.tier_limit or ():
        argv += ["--tier-limit", f"{tier}={limit}"]
    if args.no_tier_limits:
        argv.append("--no-tier-limits")
    if args.out is not None:
        argv += ["--out", str(args.out)]
    return shlex.join(argv)


def cmd_envoy_config(args: argparse.Namespace) -> int:
    """``authz envoy-config``: print or write the bootstrap; 1 when the config cannot make one."""
    from authz.ops.envoy_config import (  # noqa: PLC0415
        EnvoyConfigError,
        EnvoyOptions,
        build_bootstrap,
        render_yaml,
    )
    from authz.ops.envoy_filters import DEMO_TIER_LIMITS  # noqa: PLC0415

    settings = load(args.config)
    limits = {} if args.no_tier_limits else dict(args.tier_limit) if args.tier_limit else dict(DEMO_TIER_LIMITS)
    options = EnvoyOptions(
        target=args.target, authz_mode=args.authz_mode, listen=args.listen, admin=args.admin,
        authz=tuple(args.authz or ()), default_upstream=args.upstream, tier_limits=limits)
    try:
        text = render_yaml(build_bootstrap(settings, options), command_line(args))
    except EnvoyConfigError as exc:
        print(f"{args.config}: cannot make an Envoy config: {exc}", file=sys.stderr)
        return 1
    if args.authz_mode == "http" and not settings.server.http_route_headers:
        print(f"{args.config}: note: server.http_route_headers is false, so authz ignores the x-authz-api-id and "
              "x-authz-environment headers this config sets: APIs are matched by host and path, and sandbox "
              "routes accept production keys", file=sys.stderr)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``envoy-config`` to the ``authz`` command's subparsers."""
    p = sub.add_parser("envoy-config", help="write the Envoy bootstrap for an authz config",
                       description="Write the Envoy v3 bootstrap (YAML) that routes the config's APIs through "
                                   "authz: ext_authz, authz's cluster, one route per API.")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="authz YAML config (default: $AUTHZ_CONFIG, else "
                                                            "config/authz.yaml)")
    p.add_argument("--target", choices=("local", "compose", "kubernetes"), default="local",
                   help="local: authz's worker ports on this host; compose/kubernetes: authz's DNS name (the "
                        "compose service or the headless Service 'authz'), one endpoint per address "
                        "(default: %(default)s)")
    p.add_argument("--authz-mode", choices=("grpc", "http"), default="grpc",
                   help="ext_authz grpc_service (server.listen) or http_service (server.http_listen)")
    p.add_argument("--listen", type=_host_port, default=None,
                   help="Envoy's HTTP listener (default: 127.0.0.1:8080 local, 0.0.0.0:8080 otherwise)")
    p.add_argument("--admin", type=_host_port, default=None,
                   help="Envoy's admin listener (default: port 9901 on the listener's default host)")
    p.add_argument("--authz", type=_host_port, action="append", metavar="HOST:PORT",
                   help="an authz endpoint (repeatable), replacing those derived from the config and target")
    p.add_argument("--upstream", type=_upstream, default=None, metavar="URL",
                   help="http://host:port for APIs without apis[].upstream and the catch-all route "
                        "(default: those answer 404 after the check)")
    p.add_argument("--tier-limit", type=_tier_limit, action="append", metavar="TIER=RPM",
                   help="requests per minute for all applications of a tier (repeatable; default Bronze=60, "
                        "Silver=600, Gold=6000)")
    p.add_argument("--no-tier-limits", action="store_true", help="no rate limit filter")
    p.add_argument("--out", type=Path, default=None, help="write here (default: standard output)")
    p.set_defaults(func=cmd_envoy_config)
