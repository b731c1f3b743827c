"""``authz explain``: run the real pipeline's phases one by one on one request and report what each saw.

:func:`explain` walks :attr:`authz.decide.pipeline.Pipeline.phases` in order with each phase's own ``run`` on a
:class:`authz.decide.pipeline.Check` that carries a trace, so the phases themselves record every rule they apply
(the token's header, the key manager chosen by ``iss``, the key, the signature and each claim, the client ID claim,
the key type, the subscription, the scopes: :mod:`authz.decide.identity`, :mod:`authz.decide.policy`, the key
sources). Nothing here re-implements a check: a phase's verdict is whatever its ``run`` did; this module only reads
the check's state after each phase and says it in words.

Run it on a pipeline with empty caches (:func:`authz.ops.services.explainer`), so that every phase really runs. It never
reports a token or a secret: the bearer token appears as its length and SHA-256 prefix, and any forwarded header
value that is a JWT (the backend JWT) as its length.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authz.decide.pipeline import Check, Pipeline, token_fingerprint
from authz.errors import Denial, DependencyUnavailable, Reason
from authz.model import Allow, Request, Step

PASSED, ALLOWED, DENIED, UNAVAILABLE, NOT_REACHED = "passed", "allowed", "denied", "unavailable", "not reached"
ALLOW, DENY, UNDECIDED = "allow", "deny", "undecided"
_JWT = re.compile(r"^[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class PhaseReport:
    """One phase of an explanation.

    Attributes:
        name: the phase's name (``route``, ``public``, ``credentials``, ``identity``, ...).
        outcome: ``passed``, ``allowed`` (it decided: allow), ``denied``, ``unavailable`` (a dependency did not
            answer, or the budget ran out) or ``not reached`` (an earlier phase decided).
        steps: what the phase found and the rules it applied, in order.
    """

    name: str
    outcome: str
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Explanation:
    """The walk of one request through the phases, and the decision.

    Attributes:
        phases: every phase, in pipeline order.
        result: ``allow``, ``deny`` or ``undecided`` (the real check would answer 503).
        phase: the phase that decided (or could not).
        code: the error table's code (``ok`` for an allow).
        http_status: the status Envoy would send (200 for an allow).
        message: the error table's message ("" for an allow).
        description: what the client would be told ("" for an allow).
        detail: what only the server log would say (why a phase denied, or why nothing could be decided).
        headers: for an allow, the headers set on the upstream request (JWT values shown by length only).
        headers_to_remove: for an allow, the headers stripped from the upstream request.
        metadata: for an allow, the dynamic metadata sent to Envoy.
    """

    phases: tuple[PhaseReport, ...]
    result: str
    phase: str
    code: str
    http_status: int
    message: str = ""
    description: str = ""
    detail: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    headers_to_remove: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def exit_status(self) -> int:
        """0 for an allow, 1 for a deny, 2 when nothing could be decided."""
        return {ALLOW: 0, DENY: 1}.get(self.result, 2)

    def to_dict(self) -> dict[str, Any]:
        """The explanation as JSON-ready values (``authz explain --json``)."""
        return {
            "result": self.result, "phase": self.phase, "code": self.code, "http_status": self.http_status,
            "message": self.message, "description": self.description, "detail": self.detail,
            "headers": [list(h) for h in self.headers], "headers_to_remove": list(self.headers_to_remove),
            "metadata": dict(self.metadata),
            "phases": [{"name": p.name, "outcome": p.outcome,
                        "steps": [{"name": s.name, "seen": s.seen, "rule": s.rule, "ok": s.ok} for s in p.steps]}
                       for p in self.phases],
        }


async def explain(pipeline: Pipeline, request: Request) -> Explanation:
    """Walk ``pipeline``'s phases on ``request``, one ``run`` at a time, within the pipeline's budget.

    Args:
        pipeline: the pipeline (with empty caches, so that every phase runs).
        request: the adapted request.
    Returns:
        The :class:`Explanation`. Never raises for a denial, an outage or an internal error of a phase: those are
        the explanation's result.
    """
    trace: list[Step] = []
    check = Check(request, trace)
    reports: list[PhaseReport] = []
    outcome: Any = None
    phase_name, mark = "", 0
    try:
        async with asyncio.timeout(pipeline.budget):
            for phase in pipeline.phases:
                phase_name, mark = phase.name, len(trace)
                try:
                    await phase.run(check)
                except Exception as exc:
                    reports.append(PhaseReport(phase.name, DENIED if isinstance(exc, Denial) else UNAVAILABLE,
                                               _steps(phase.name, check, trace[mark:], exc)))
                    outcome = exc
                    break
                decided = check.allow is not None
                reports.append(PhaseReport(phase.name, ALLOWED if decided else PASSED,
                                           _steps(phase.name, check, trace[mark:], None)))
                if decided:
                    outcome = check.allow
                    break
    except TimeoutError:
        outcome = TimeoutError(f"the phases took longer than server.decision_timeout ({pipeline.budget:g}s)")
        reports.append(PhaseReport(phase_name, UNAVAILABLE, tuple(trace[mark:])))
    reports.extend(PhaseReport(p.name, NOT_REACHED) for p in pipeline.phases[len(reports):])
    return _decision(tuple(reports), phase_name, outcome)


def _decision(reports: tuple[PhaseReport, ...], phase: str, outcome: Any) -> Explanation:
    if isinstance(outcome, Allow):
        return Explanation(
            reports, ALLOW, phase, "ok", 200,
            headers=tuple((name, _no_token(value)) for name, value in outcome.headers),
            headers_to_remove=outcome.headers_to_remove, metadata=dict(outcome.dynamic_metadata))
    if isinstance(outcome, Denial):
        info = outcome.reason.info
        return Explanation(reports, DENY, phase, str(info.code), info.http_status, info.message,
                           outcome.description, outcome.log_detail or "")
    info = Reason.TEMPORARILY_UNAVAILABLE.info
    if isinstance(outcome, DependencyUnavailable):
        why = f"{outcome.dependency} unavailable: {outcome.detail}"
    elif outcome is None:
        why = "no phase decided"
    elif isinstance(outcome, TimeoutError):
        why = str(outcome)
    else:
        why = f"internal error in phase {phase}: {type(outcome).__name__}: {outcome}"
    return Explanation(reports, UNDECIDED, phase, str(info.code), info.http_status, info.message,
                       "authz could not decide: the real check would answer 503", why)


def _no_token(value: str) -> str:
    return f"<a JWT, {len(value)} characters>" if _JWT.match(value) else value


def _steps(name: str, check: Check, traced: list[Step], error: Exception | None) -> tuple[Step, ...]:
    """What phase ``name`` found, read from the check's state, with the steps it traced itself."""
    found = _FINDINGS.get(name)
    described = found(check, error) if found is not None else []
    if error is not None and not traced and not described:
        described = [Step(name, str(error)[:300], "", False)]
    return tuple(traced + described if name == "identity" else described + traced)


def _route(check: Check, error: Exception | None) -> list[Step]:
    ext = check.request.context_extensions
    asked = f"api_id={ext.get('api_id', '-')} host={check.request.host or '-'} path={check.request.path[:200]}"
    route = check.route
    if route is None:
        denial = check.route_denial or error
        return [Step("route", asked, "context_extensions.api_id, else the longest context matching host + path; then "
                     "the most specific resource template for the path and method",
                     False if isinstance(error, Denial) else None),
                Step("no route", str(getattr(denial, "description", denial)),
                     "reported by phase resource, once the caller is authenticated" if error is None else "", False)]
    api, res = route.api, route.resource
    scopes = f"{res.scope_match} of: {' '.join(res.scopes)}" if res.scopes else "none"
    return [Step("api", f"{api.id} ({api.name}), context {api.context}", "context_extensions.api_id if set, else "
                 "the longest context matching host + path", True),
            Step("resource", f"{' '.join(res.methods)} {res.path} (auth: {res.auth}) for {route.path}",
                 "the most specific template of the API matching the canonical path and the method", True),
            Step("scopes required", scopes, "resources[].scopes and scope_match", None),
            Step("environment", ext.get("environment", "production (none set)"), "context_extensions.environment",
                 None)]


def _public(check: Check, error: Exception | None) -> list[Step]:
    route = check.route
    public = route is not None and route.resource.auth == "none"
    sent = "authorization" in check.request.headers
    seen = f"auth: {route.resource.auth if route else '-'}, authorization header {'sent' if sent else 'absent'}"
    rule = "a public resource (auth: none) called without credentials is allowed here"
    if not public:
        rule = "not a public resource: the caller must authenticate"
    return [Step("public", seen, rule, True if check.allow is not None else None)]


def _credentials(check: Check, error: Exception | None) -> list[Step]:
    if error is not None:
        return [Step("bearer token", str(getattr(error, "description", error)),
                     "one 'Authorization: Bearer <token>' (RFC 6750 section 2.1)", False)]
    return [Step("bearer token", f"{len(check.token)} characters, SHA-256 {token_fingerprint(check.token)}...",
                 "one 'Authorization: Bearer <token>' (RFC 6750 section 2.1)", True)]


def _identity(check: Check, error: Exception | None) -> list[Step]:
    identity = check.identity
    if identity is None:
        return []
    return [Step("identity", f"key manager {identity.key_manager}, sub {identity.subject or '-'}, client "
                 f"{identity.client_id}, jti {identity.token_id or '-'}", "the validated token", True)]


def _revocation(check: Check, error: Exception | None) -> list[Step]:
    identity = check.identity
    if identity is None:
        return []
    if identity.token_id is None:
        return [Step("jti", "none", "a token without jti cannot be revoked one by one", None)]
    if isinstance(error, DependencyUnavailable):
        return [Step("jti", identity.token_id, "not revoked (read from the registry)", None)]
    return [Step("jti", identity.token_id, "not revoked (authz registry revoke)", error is None)]


def _key_manager(check: Check, error: Exception | None) -> list[Step]:
    identity, route = check.identity, check.route
    if identity is None:
        return []
    if route is None:
        return [Step("key manager", identity.key_manager, "not checked: no route matched (phase resource)", None)]
    accepted = route.api.key_managers
    rule = (f"one API {route.api.id} accepts (apis[].key_managers): {', '.join(accepted)}" if accepted is not None
            else f"any (API {route.api.id} lists no key_managers)")
    return [Step("key manager", identity.key_manager, rule, error is None)]


def _resource(check: Check, error: Exception | None) -> list[Step]:
    if isinstance(error, Denial):
        return [Step("route", error.description, "a configured API and resource match the request", False)]
    if check.allow is not None:
        return [Step("public", "auth: none, called with a valid token", "allowed without registry or scope checks, "
                     "no identity forwarded", True)]
    return [Step("route", "matched", "a configured API and resource match the request", True)]


def _registry(check: Check, error: Exception | None) -> list[Step]:
    """What the registry holds for the token's client ID and the API (the policy phase judges it)."""
    lookup = check.lookup
    identity = check.identity
    if lookup is None:
        return []
    api = check.route.api.id if check.route is not None else "-"
    binding, app, sub = lookup.binding, lookup.application, lookup.subscription
    who = f"client {identity.client_id} of key manager {identity.key_manager}" if identity else "client"
    return [Step("client", f"{who} -> " + (f"application {binding.application_id}, {binding.key_type.value} key"
                                           if binding else "not registered"), "", None),
            Step("application", f"{app.name}: {app.status.value}, tier {app.tier}" if app else "-", "", None),
            Step("subscription", f"to {api}: " + (f"{sub.status.value}, tier {sub.tier}" if sub else "none"), "",
                 None)]


_FINDINGS = {"route": _route, "public": _public, "credentials": _credentials, "identity": _identity,
             "key_manager": _key_manager, "revocation": _revocation, "resource": _resource, "registry": _registry}
