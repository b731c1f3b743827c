"""The fault suite's load driver and classifier: requests through Envoy at a fixed rate, each answer sorted into

* ``allowed``: 200 from the echo upstream (its JSON echo, with the ``x-application-id`` authz added);
* ``denied``: a decision authz made (401, 403, 503...: ``application/json`` with authz's ``code`` and ``message``);
* ``failed``: anything else: a connection error, a timeout, Envoy's own 503 (authz unreachable or reset) without
  authz's body, any other answer.

A request that must be denied and got ``allowed`` is a ``wrong_allow``.
"""

from __future__ import annotations

import collections
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ALLOWED, DENIED, FAILED = "allowed", "denied", "failed"


@dataclass(frozen=True)
class Shot:
    """One kind of request of the mix: ``label`` names it in the results, ``token`` is its bearer token (or a
    callable returning a fresh one per request), ``must_deny`` marks a request that must never be allowed."""

    label: str
    token: str | Callable[[], str]
    must_deny: bool = False
    path: str = "/orders/v1/items"


@dataclass(frozen=True)
class Result:
    at: float
    """Seconds since the load started, when the request was sent."""
    label: str
    outcome: str
    status: int | None
    must_deny: bool
    took: float
    """Seconds until the answer (or the error)."""


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: bytes


def classify(answer: Answer | Exception) -> tuple[str, int | None]:
    """``(outcome, status)`` of one answer through Envoy (see the module docstring)."""
    if isinstance(answer, Exception):
        return FAILED, None
    try:
        body = json.loads(answer.body) if answer.content_type == "application/json" else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return FAILED, answer.status
    if answer.status == 200 and "x-application-id" in body.get("headers", {}):
        return ALLOWED, answer.status
    if answer.status in (400, 401, 403, 429, 503) and isinstance(body.get("code"), int) and "message" in body:
        return DENIED, answer.status
    return FAILED, answer.status


@dataclass
class Tally:
    """The results of one load run, in the order they arrived."""

    start: float = field(default_factory=time.monotonic)
    results: list[Result] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clock(self) -> float:
        """Seconds since the load started (the time base of :attr:`Result.at`)."""
        return time.monotonic() - self.start

    def add(self, result: Result) -> None:
        with self.lock:
            self.results.append(result)

    def select(self, label: str | None = None, since: float = 0.0) -> list[Result]:
        return [r for r in self.results if (label is None or r.label == label) and r.at >= since]

    @property
    def sent(self) -> int:
        return len(self.results)

    def count(self, outcome: str, label: str | None = None) -> int:
        return sum(r.outcome == outcome for r in self.select(label))

    def denied(self, label: str | None = None, since: float = 0.0) -> dict[int, int]:
        """Denials by status code."""
        return dict(sorted(collections.Counter(
            r.status for r in self.select(label, since) if r.outcome == DENIED).items()))  # type: ignore[type-var]

    def statuses(self, label: str | None = None, since: float = 0.0) -> dict[int | None, int]:
        """Every answer of ``label`` by status (None: no answer), whatever its outcome."""
        return dict(collections.Counter(r.status for r in self.select(label, since)))

    @property
    def span(self) -> float:
        """Seconds from the first request sent to the last."""
        return self.results[-1].at - self.results[0].at if self.results else 0.0

    @property
    def slowest(self) -> float:
        """Seconds of the slowest answer."""
        return max((r.took for r in self.results), default=0.0)

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def wrong_allows(self) -> int:
        return sum(r.outcome == ALLOWED and r.must_deny for r in self.results)

    def line(self, scenario: str) -> str:
        return (f"scenario={scenario} sent={self.sent} allowed={self.count(ALLOWED)} denied={self.denied()} "
                f"failed={self.failed} wrong_allows={self.wrong_allows} span={self.span:.1f}s "
                f"slowest={self.slowest:.2f}s")

    def failures(self, limit: int = 5) -> list[Result]:
        return [r for r in self.results if r.outcome == FAILED][:limit]


def report(tally: Tally, scenario: str, record_property: Callable[[str, object], None] | None = None) -> None:
    """Print the scenario's line of counts (and attach it to the test's report)."""
    line = tally.line(scenario)
    print("\n" + line)
    if record_property is not None:
        record_property("fault_counts", line)


@contextmanager
def driving(gateway: str, mix: Sequence[Shot], *, seconds: float, rate: float = 200.0,
            threads: int = 16, timeout: float = 10.0) -> Iterator[Tally]:
    """Send ``mix`` round robin through ``gateway`` at ``rate`` requests per second for ``seconds`` while the
    ``with`` body injects a fault; on exit, wait for the load to end (at most ``rate * seconds`` requests, and
    nothing sent after ``seconds`` plus a few seconds of slack when the machine falls behind).

    Each of ``threads`` threads keeps one keep-alive connection (``http.client``: light enough for a loaded
    2-core machine) to Envoy and sends every ``threads``-th request
    at its planned time (or at once when late: a slow answer delays, never bursts, the requests after it).
    """
    tally = Tally()
    total = int(rate * seconds)
    start = tally.start
    where = urlsplit(gateway)
    stop_sending = start + seconds + 3.0

    def run(first: int) -> None:
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=timeout)
        try:
            for n in range(first, total, threads):
                due = start + n / rate
                now = time.monotonic()
                if now > stop_sending:
                    return
                if due > now:
                    time.sleep(due - now)
                shot = mix[n % len(mix)]
                token = shot.token() if callable(shot.token) else shot.token
                sent = time.monotonic() - start
                try:
                    conn.request("GET", shot.path, headers={"authorization": f"Bearer {token}"})
                    response = conn.getresponse()
                    answer: Answer | Exception = Answer(
                        response.status, response.getheader("content-type"), response.read())
                except (OSError, http.client.HTTPException) as exc:
                    answer = exc
                    conn.close()  # the next request opens a new connection
                outcome, status = classify(answer)
                tally.add(Result(sent, shot.label, outcome, status, shot.must_deny, tally.clock() - sent))
        finally:
            conn.close()

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    try:
        yield tally
    finally:
        for w in workers:
            w.join(seconds + timeout + 10)
        tally.results.sort(key=lambda r: r.at)
