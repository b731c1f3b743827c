"""The one error contract: every denial path's client-facing description is safe, every row is explicit."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from authz.envoy.render import deny_response
from authz.errors import GRPC_PERMISSION_DENIED, GRPC_UNAUTHENTICATED, Denial, Reason

AUTHZ = Path(__file__).resolve().parent.parent / "authz"

# The values a client-facing description may interpolate, each reviewed: names and IDs the client already
# knows or that the config publishes, claim *names* (never claim values), statuses and configured limits.
# Never a token, a claim value, key material, an exception's text (it may carry any of these, or a stack),
# a Redis key or URL. A new interpolation fails here until it is reviewed and added.
REVIEWED = {
    "api.settings.id", "api_id", "method", "path[:256]", "app.name", "sub.status.value",
    "route.resource.scope_match", "needed", "claim", "', '.join(claims)", "exc.claim", "self._max_size",
    "km.max_token_lifetime",
    # issue 10: tokens.max_size; the JWS syntax problem (built from segment names, constants and a segment
    # count, never token text); a constant claim label; the configured header name and its length limit; the
    # configured key manager name and API id of a refused key manager.
    "max_token_bytes", "syntax_problem", "claim_label", "_TOKEN_FIELDS[field]", "forwarded_as",
    "MAX_HEADER_VALUE_BYTES",
    "identity.key_manager", "route.api.id",
}
_FORBIDDEN = re.compile(r"secret|password|private|pem|jwk|payload|header|redis|prefix|url|str\(|repr\(")


def _description_wrappers(tree: ast.Module) -> dict[str, int]:
    """Functions that pass one of their parameters on as a Denial description: name -> parameter index."""
    wrappers: dict[str, int] = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        params = [a.arg for a in fn.args.args]
        for call in ast.walk(fn):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Denial" and len(call.args) > 1:
                arg = call.args[1]
                if isinstance(arg, ast.Name) and arg.id in params:
                    wrappers[fn.name] = params.index(arg.id)
    return wrappers


def _descriptions() -> list[tuple[str, ast.expr]]:
    trees = {p: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(AUTHZ.rglob("*.py"))}
    wrappers: dict[str, int] = {"Denial": 1}
    for tree in trees.values():
        wrappers.update(_description_wrappers(tree))
    found = []
    for path, tree in trees.items():
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
            if name not in wrappers:
                continue
            index = wrappers[name]
            arg = call.args[index] if len(call.args) > index else next(
                (k.value for k in call.keywords if k.arg == "description"), None)
            if arg is not None:
                found.append((f"{path.relative_to(AUTHZ.parent)}:{call.lineno}", arg))
    return found


def test_every_denial_description_interpolates_nothing_internal() -> None:
    descriptions = _descriptions()
    assert len(descriptions) >= 20  # every phase's denials are found, wrappers included
    problems = []
    for where, expr in descriptions:
        if isinstance(expr, ast.Constant):
            assert isinstance(expr.value, str), where
            continue
        if isinstance(expr, ast.Name) and expr.id == "description":
            continue  # a wrapper's own parameter: its call sites are scanned
        if not isinstance(expr, ast.JoinedStr):
            problems.append(f"{where}: description is not a literal or f-string: {ast.unparse(expr)}")
            continue
        for part in expr.values:
            if isinstance(part, ast.FormattedValue):
                source = ast.unparse(part.value)
                if source not in REVIEWED or _FORBIDDEN.search(source) or part.conversion == ord("r"):
                    problems.append(f"{where}: interpolates {source}")
    assert problems == []


def test_literal_descriptions_name_what_failed_without_internals() -> None:
    for where, expr in _descriptions():
        if isinstance(expr, ast.Constant):
            text = expr.value
            assert 10 <= len(text) <= 200, where
            assert not re.search(r"authz:|redis|traceback|BEGIN|eyJ", text, re.IGNORECASE), where


def test_every_reason_is_an_explicit_http_status_with_grpc_7_or_16() -> None:
    for reason in Reason:
        info = reason.info
        assert info.grpc_status in (GRPC_PERMISSION_DENIED, GRPC_UNAUTHENTICATED), reason
        assert info.http_status in (400, 401, 403, 404, 429, 503), reason
        response = deny_response(Denial(reason, "What failed"), "authz")
        assert response.status.code == info.grpc_status
        assert response.denied_response.status.code == info.http_status
        headers = {h.header.key: h.header.value for h in response.denied_response.headers}
        assert headers["content-type"] == "application/json"
        assert ("retry-after" in headers) == (info.http_status == 503), reason
        assert (info.http_status in (400, 401)) == (info.grpc_status == GRPC_UNAUTHENTICATED), reason
