"""``authz explain``: why a request would be allowed or denied, phase by phase (:mod:`authz.decide.explain`).

    authz explain --config FILE (--token T | --token-file F | --no-token) --path /orders/v1/items [--method GET]
                  [--host H] [--api-id ID] [--environment sandbox] [--header 'K: V']... [--json]

Runs the real phases against the registry (the config's Redis) and key managers of ``FILE``, and prints each
phase in order with what it saw and the rule it applied, then the decision: its code, and for an allow the
headers and metadata the upstream and Envoy would get. The token is never printed (its length and SHA-256
prefix are). Exit status: 0 allow, 1 deny, 2 could not decide (a dependency down, the decision budget exceeded,
an unreadable config or token file: the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from authz.config import ConfigError, Settings, load_config
from authz.decide.explain import ALLOW, DENY, Explanation
from authz.envoy.requests import described_request
from authz.errors import Denial
from authz.model import Request
from authz.ops.cli_support import DEFAULT_CONFIG, run, setup_logging

UNDECIDED_STATUS = 2
_MARKS = {True: "ok  ", False: "FAIL", None: "    "}


def add_parser(sub: Any) -> None:
    """Add ``explain`` to the ``authz`` command's subparsers ``sub``."""
    p = sub.add_parser("explain", help="why a request is allowed or denied, phase by phase", description=(
        "Run the real decision phases on one request against the registry and key managers of the config, and "
        "print each phase with what it saw. Exit status: 0 allow, 1 deny, 2 could not decide."))
    p.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: $AUTHZ_CONFIG, else "
                   "config/authz.yaml)")
    token = p.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="the bearer token (prefer --token-file: a command line is visible to others)")
    token.add_argument("--token-file", help="a file holding the token ('-': standard input)")
    token.add_argument("--no-token", action="store_true", help="a request without an authorization header")
    p.add_argument("--method", default="GET")
    p.add_argument("--path", required=True, help="the request's path, e.g. /orders/v1/items")
    p.add_argument("--host", default="", help="the :authority (for APIs matched by host)")
    p.add_argument("--api-id", default="", help="context_extensions.api_id, as the Envoy route sets it")
    p.add_argument("--environment", default="", help="context_extensions.environment (sandbox or production)")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="another request header")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.add_argument("--log-level", default="warning", help="level of the log written to stderr (default: warning)")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    """Run ``authz explain``; returns 0 (allow), 1 (deny) or 2 (could not decide)."""
    setup_logging(args.log_level)
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: invalid configuration, cannot decide:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return UNDECIDED_STATUS
    setup_logging(args.log_level, settings.logging.format)
    try:
        token = _token(args)
        headers = [_header(h) for h in args.header]
    except ValueError as exc:
        print(f"authz explain: {exc}", file=sys.stderr)
        return UNDECIDED_STATUS
    try:
        request = described_request(args.method, args.path, token=token, host=args.host, api_id=args.api_id,
                                    environment=args.environment, headers=headers)
    except Denial as denial:  # refused by the front end before any phase
        print(f"decision: DENY {denial.reason.info.http_status} {denial.reason.info.code} "
              f"{denial.reason.info.message} (phase adapt): {denial.description}")
        return 1
    explanation = run(_explain(settings, request))
    if args.json:
        print(json.dumps(explanation.to_dict(), indent=2))
    else:
        print(render(request, explanation))
    return explanation.exit_status


def _token(args: argparse.Namespace) -> str | None:
    if args.no_token:
        return None
    if args.token is not None:
        return args.token.strip()
    try:
        text = sys.stdin.read() if args.token_file == "-" else open(args.token_file, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--token-file: cannot read {args.token_file}: {exc}") from None
    return text.strip()


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"--header: expected 'Name: value', got {text[:60]!r}")
    return name.strip(), value.strip()


async def _explain(settings: Settings, request: Request) -> Explanation:
    from authz.ops.services import build_services, explainer  # noqa: PLC0415 - the server's wiring, loaded on use

    services = await build_services(settings)
    try:
        return await explainer(settings, services.jwks, services.store, services.backend_jwt)(request)
    finally:
        await services.close()


def _safe(text: str) -> str:
    """``text`` with every non-printable character escaped (values come from tokens and requests)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def render(request: Request, explanation: Explanation) -> str:
    """The text form of an explanation: each phase with its steps, then the decision."""
    ext = request.context_extensions
    out = [f"authz explain: {_safe(request.method)} {_safe(request.path)} (host {_safe(request.host) or '-'}, "
           f"api_id {_safe(ext.get('api_id', '-'))}, environment {_safe(ext.get('environment', '-'))})", ""]
    for number, phase in enumerate(explanation.phases, 1):
        out.append(f"{number}. {phase.name}: {phase.outcome}")
        for step in phase.steps:
            out.append(f"   {_MARKS[step.ok]} {_safe(step.name)}: {_safe(step.seen)}")
            if step.rule:
                out.append(f"        rule: {_safe(step.rule)}")
    out.append("")
    e = explanation
    if e.result == ALLOW:
        out.append(f"decision: ALLOW (phase {e.phase})")
        out.append("  upstream headers set: " + (", ".join(f"{n}: {_safe(v)}" for n, v in e.headers) or "none"))
        out.append("  upstream headers removed: " + (", ".join(e.headers_to_remove) or "none"))
        out.append("  dynamic metadata: " + (", ".join(f"{k}={_safe(v)}" for k, v in e.metadata.items()) or "none"))
    elif e.result == DENY:
        out.append(f"decision: DENY {e.http_status} {e.code} {e.message} (phase {e.phase})")
        out.append(f"  client is told: {_safe(e.description)}")
        if e.detail:
            out.append(f"  log detail: {_safe(e.detail)}")
    else:
        out.append(f"decision: could not decide (phase {e.phase or '-'}): {_safe(e.detail)}")
        out.append(f"  the real check would answer {e.http_status} {e.code} {e.message}")
    return "\n".join(out)
