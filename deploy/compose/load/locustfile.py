"""Load profile of the compose stack: tokens from the key manager's token endpoint (OAuth2 password grant, RFC 6749
section 4.3), then a mix of calls through Envoy whose every status is known in advance:

* ``allowed``: ``GET /orders/v1/items`` with the token (Demo App is subscribed to orders-v1): 200;
* ``no token 401``: the same call without a token: 401 (900902);
* ``not subscribed 403``: ``GET /payments/v1/charges`` with the token (no subscription to payments-v1): 403.

Any other status is a failure. When the run ends the process exits 1 if the share of failures is above
``AUTHZ_LOAD_MAX_FAIL_RATIO`` (default 0: not one unexpected status) or the 99th percentile of all calls is above
``AUTHZ_LOAD_P99_MS`` milliseconds (default 250) for any of the three kinds of call.

Settings (environment, each ``AUTHZ_LOAD_`` + name): ``TOKEN_URL`` (default Keycloak's
``http://keycloak:8080/realms/authz/protocol/openid-connect/token``), ``CLIENT_ID``/``CLIENT_SECRET``
(``demo-client``/``demo-secret``), ``USERNAME``/``PASSWORD`` (``demo``/``demo``), ``SCOPE`` (``orders:read``). The
target is locust's ``--host`` (``http://envoy:8080`` in compose).

    locust -f deploy/compose/load/locustfile.py --headless -u 20 -r 10 -t 60s --host http://127.0.0.1:8080
"""

from __future__ import annotations

import os
import time

from locust import HttpUser, between, events, task

TOKEN_URL = os.environ.get("AUTHZ_LOAD_TOKEN_URL", "http://keycloak:8080/realms/authz/protocol/openid-connect/token")
CLIENT_ID = os.environ.get("AUTHZ_LOAD_CLIENT_ID", "demo-client")
CLIENT_SECRET = os.environ.get("AUTHZ_LOAD_CLIENT_SECRET", "demo-secret")
USERNAME = os.environ.get("AUTHZ_LOAD_USERNAME", "demo")
PASSWORD = os.environ.get("AUTHZ_LOAD_PASSWORD", "demo")
SCOPE = os.environ.get("AUTHZ_LOAD_SCOPE", "orders:read")
MAX_FAIL_RATIO = float(os.environ.get("AUTHZ_LOAD_MAX_FAIL_RATIO", "0"))
P99_MS = float(os.environ.get("AUTHZ_LOAD_P99_MS", "250"))
CALLS = ("allowed", "no token 401", "not subscribed 403")
"""The names of the calls through Envoy in locust's statistics."""
REFRESH_MARGIN = 30.0
"""Seconds before its expiry a token is replaced."""


class ApiClient(HttpUser):
    """One simulated client application with its own access token."""

    wait_time = between(0.01, 0.05)
    token = ""
    expires_at = 0.0

    def on_start(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        data = {"grant_type": "password", "username": USERNAME, "password": PASSWORD, "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, "scope": SCOPE}
        with self.client.post(TOKEN_URL, data=data, name="token (password grant)", catch_response=True) as r:
            if r.status_code != 200 or "access_token" not in r.text:
                r.failure(f"token endpoint answered {r.status_code}")
                return
            body = r.json()
            self.token = body["access_token"]
            self.expires_at = time.time() + float(body.get("expires_in", 300))

    def _call(self, path: str, name: str, expected: int, with_token: bool = True) -> None:
        if with_token and time.time() > self.expires_at - REFRESH_MARGIN:
            self._refresh()
        headers = {"authorization": f"Bearer {self.token}"} if with_token else {}
        with self.client.get(path, headers=headers, name=name, catch_response=True) as r:
            if r.status_code == expected:
                r.success()
            else:
                r.failure(f"expected {expected}, got {r.status_code}: {r.text[:120]}")

    @task(6)
    def allowed(self) -> None:
        self._call("/orders/v1/items", "allowed", 200)

    @task(2)
    def no_token(self) -> None:
        self._call("/orders/v1/items", "no token 401", 401, with_token=False)

    @task(2)
    def not_subscribed(self) -> None:
        self._call("/payments/v1/charges", "not subscribed 403", 403)


@events.quitting.add_listener
def _thresholds(environment, **_kwargs) -> None:  # noqa: ANN001 - locust's event signature
    """Exit 1 when a threshold is crossed; print the verdict either way."""
    total = environment.stats.total
    # The p99 of the calls through Envoy (the worst of the three kinds), token requests left out.
    p99 = max((environment.stats.get(name, "GET").get_response_time_percentile(0.99) or 0.0) for name in CALLS)
    problems = []
    if total.num_requests == 0:
        problems.append("no request was sent")
    if total.fail_ratio > MAX_FAIL_RATIO:
        problems.append(f"unexpected statuses: {total.num_failures} of {total.num_requests} calls "
                        f"(ratio {total.fail_ratio:.4f} > {MAX_FAIL_RATIO})")
    if p99 > P99_MS:
        problems.append(f"p99 {p99:.0f} ms > {P99_MS:.0f} ms")
    verdict = "; ".join(problems) or "all thresholds met"
    print(f"authz load: {total.num_requests} calls, {total.num_failures} unexpected, p99 {p99:.0f} ms: {verdict}")
    environment.process_exit_code = 1 if problems else 0
