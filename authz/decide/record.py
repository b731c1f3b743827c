"""What a decision leaves behind: its count for the metrics and, per ``logging.decisions``, a decision line.

Each front end (gRPC, HTTP) owns one :class:`DecisionRecorder` and calls :meth:`DecisionRecorder.allowed` or
:meth:`DecisionRecorder.denied` once per check. On the hot path that is two clock reads, a dict increment and a
list increment: the Prometheus objects are updated from these plain counters off the hot path
(:mod:`authz.ops.metrics`, which drains them with :meth:`DecisionRecorder.take`). The recorder runs on the event
loop's thread, as the front ends and the metrics copy do, so no lock is needed.

A decision line (logger ``authz.decisions``, INFO) carries the request ID, mode, API, resource, method, path
without the query, application ID, client ID, key manager, result, code, reason, the phase that decided, the
latency in microseconds and the first 12 hex digits of the token's SHA-256 (``token_fingerprint``): never the
token, never a secret. The fields travel with the record (``record.fields``): the JSON log format writes them as
JSON members (:mod:`authz.ops.logs`), the text format as ``name=value`` pairs, a value quoted and escaped (JSON
string syntax) whenever it holds anything but plain characters, so no request value can start a new line or pass
for another field.
"""

from __future__ import annotations

import json
import logging
import re
from bisect import bisect_left
from time import perf_counter
from typing import Any

from authz.decide.pipeline import Check, token_fingerprint
from authz.errors import Denial

log = logging.getLogger("authz.decisions")

DURATION_BUCKETS = (0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)
"""Upper bounds (seconds) of the check duration histogram, fitted to 0.02-20 ms: a warm check takes tens of
microseconds, one that verifies a signature or reads Redis about a millisecond, one that fetches keys more."""

ALLOW_CODE = 0
"""The code counted for an allow (exported as ``code="ok"``)."""

MAX_PATH_LOGGED = 1024
"""Longest path (characters, query removed) a decision line carries."""

_PLAIN = re.compile(r"[A-Za-z0-9._~:/@+,%*-]*")


class DecisionRecorder:
    """Counts and logs the decisions of one front end.

    Args:
        mode: ``grpc`` or ``http`` (the ``mode`` label and field).
        decisions: ``logging.decisions``: ``all``, ``denies`` (denials and anonymous allows of public resources)
            or ``none``.
        counting: whether decisions are counted (metrics served); when False the hot path only reads the clock.

    Attributes:
        allows: ``api id -> allowed checks`` since the last :meth:`take`.
        denials: ``(api id, code) -> denied checks`` since the last :meth:`take` (api ``""`` when no API matched).
        buckets: checks per :data:`DURATION_BUCKETS` bucket since the last :meth:`take` (the last one: +Inf).
        seconds: total duration of those checks, in seconds.
    """

    __slots__ = ("mode", "counting", "allows", "denials", "buckets", "seconds", "_log_allows", "_log_public",
                 "_log_denies")

    def __init__(self, mode: str, decisions: str = "denies", counting: bool = True) -> None:
        self.mode = mode
        self.counting = counting
        self.allows: dict[str, int] = {}
        self.denials: dict[tuple[str, int], int] = {}
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.seconds = 0.0
        self.log_decisions(decisions)

    def log_decisions(self, decisions: str) -> None:
        """Which decisions get a line from now on (``logging.decisions``: ``all``, ``denies`` or ``none``; a
        config reload calls it)."""
        self._log_allows = decisions == "all"
        self._log_public = decisions in ("all", "denies")
        self._log_denies = decisions in ("all", "denies")

    def allowed(self, check: Check, started: float) -> None:
        """Record an allow.

        Args:
            check: the evaluated check (``allow``, ``route`` and ``phase`` set).
            started: :func:`time.perf_counter` when the front end received the request.
        """
        elapsed = perf_counter() - started
        if self.counting:
            api = check.route.api.id  # type: ignore[union-attr]  # an allow always has a route
            allows = self.allows
            allows[api] = allows.get(api, 0) + 1
            self.buckets[bisect_left(DURATION_BUCKETS, elapsed)] += 1
            self.seconds += elapsed
        if self._log_allows or (self._log_public and check.phase == "public"):
            self._log(check, None, elapsed)

    def denied(self, check: Check | None, denial: Denial, started: float, phase: str = "") -> None:
        """Record a denial.

        Args:
            check: the evaluated check, or None when the request was refused before the pipeline (adapt).
            denial: the denial sent.
            started: :func:`time.perf_counter` when the front end received the request.
            phase: the phase that denied when there is no check (``adapt``).
        """
        elapsed = perf_counter() - started
        if self.counting:
            route = check.route if check is not None else None
            key = (route.api.id if route is not None else "", denial.reason.info.code)
            denials = self.denials
            denials[key] = denials.get(key, 0) + 1
            self.buckets[bisect_left(DURATION_BUCKETS, elapsed)] += 1
            self.seconds += elapsed
        if self._log_denies:
            self._log(check, denial, elapsed, phase)

    @property
    def counts(self) -> dict[tuple[str, int], int]:
        """``(api id, code) -> checks`` since the last :meth:`take` (code :data:`ALLOW_CODE` for an allow)."""
        return {**{(api, ALLOW_CODE): n for api, n in self.allows.items()}, **self.denials}

    def take(self) -> tuple[dict[tuple[str, int], int], list[int], float]:
        """The counts since the last call, which start again from zero.

        Returns:
            ``(counts, buckets, seconds)``: :attr:`counts`, :attr:`buckets` and :attr:`seconds`.
        """
        taken = (self.counts, self.buckets, self.seconds)
        self.allows, self.denials = {}, {}
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.seconds = 0.0
        return taken

    def _log(self, check: Check | None, denial: Denial | None, elapsed: float, phase: str = "") -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        fields = decision_fields(self.mode, check, denial, elapsed, phase)
        # makeRecord + handle: what log.info does, without looking up the caller's frame (a decision line names
        # no source line), which would cost more than building the line.
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "%s", (TextLine(fields),), None,
                                  extra={"fields": fields}))


def decision_fields(
    mode: str, check: Check | None, denial: Denial | None, elapsed: float, phase: str = ""
) -> dict[str, Any]:
    """The members of a decision line.

    Args:
        mode: ``grpc`` or ``http``.
        check: the evaluated check, or None for a request refused before the pipeline.
        denial: the denial, or None for an allow.
        elapsed: seconds the check took.
        phase: the deciding phase when there is no check.
    Returns:
        ``event`` (``decision``), ``request_id``, ``mode``, ``api``, ``resource``, ``method``, ``path``,
        ``application_id``, ``client_id``, ``key_manager``, ``result``, ``code``, ``reason``, ``detail``,
        ``phase``, ``latency_us`` and ``token_fingerprint``; None where unknown.
    """
    request = check.request if check is not None else None
    route = check.route if check is not None else None
    identity = check.identity if check is not None else None
    lookup = check.lookup if check is not None else None
    binding = lookup.binding if lookup is not None else None
    token = check.token if check is not None else ""
    return {
        "event": "decision",
        "request_id": (request.request_id or None) if request is not None else None,
        "mode": mode,
        "api": route.api.id if route is not None else None,
        "resource": route.resource.path if route is not None else None,
        "method": request.method if request is not None else None,
        "path": request.path.split("?", 1)[0][:MAX_PATH_LOGGED] if request is not None else None,
        "application_id": binding.application_id if binding is not None else None,
        "client_id": identity.client_id if identity is not None else None,
        "key_manager": identity.key_manager if identity is not None else None,
        "result": "allow" if denial is None else "deny",
        "code": "ok" if denial is None else str(denial.reason.info.code),
        "reason": denial.description if denial is not None else None,
        "detail": denial.log_detail if denial is not None else None,
        "phase": (check.phase if check is not None else phase) or None,
        "latency_us": round(elapsed * 1e6),
        "token_fingerprint": token_fingerprint(token) if token else None,
    }


class TextLine:
    """A decision line in the text log format, rendered only when a handler formats the record:
    ``decision result=deny code=900901 ...``, members without a value left out, values quoted and escaped (JSON
    string syntax) unless they are plain (letters, digits and ``._~:/@+,%*-``)."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        parts = ["decision"]
        for name, value in self.fields.items():
            if value is None or name == "event":
                continue
            text = str(value)
            parts.append(f"{name}={text if text and _PLAIN.fullmatch(text) else json.dumps(text)}")
        return " ".join(parts)
