"""The fault suite's classifier: only authz's own decisions count as denials; Envoy's own answers are failures."""

from __future__ import annotations

import json

import pytest

from tests.faults.load import ALLOWED, DENIED, FAILED, Answer, classify

JSON = "application/json"
AUTHZ_503 = json.dumps({"code": 900950, "message": "Service temporarily unavailable", "description": "Redis",
                        "error": "temporarily_unavailable"}).encode()


@pytest.mark.parametrize(("answer", "expected"), [
    (Answer(200, JSON, json.dumps({"path": "/", "headers": {"x-application-id": "a"}}).encode()), (ALLOWED, 200)),
    (Answer(401, JSON, json.dumps({"code": 900901, "message": "Invalid credentials"}).encode()), (DENIED, 401)),
    (Answer(403, JSON, json.dumps({"code": 900908, "message": "Resource forbidden"}).encode()), (DENIED, 403)),
    (Answer(503, JSON, AUTHZ_503), (DENIED, 503)),
    # Envoy's own answers: the ext_authz filter's status_on_error, an upstream connect failure, a reset.
    (Answer(503, None, b""), (FAILED, 503)),
    (Answer(503, "text/plain", b"upstream connect error or disconnect/reset before headers"), (FAILED, 503)),
    (Answer(403, None, b""), (FAILED, 403)),
    # A 200 that authz did not let through (no header of its own), a 500 with a JSON body, garbage JSON.
    (Answer(200, JSON, json.dumps({"path": "/", "headers": {}}).encode()), (FAILED, 200)),
    (Answer(500, JSON, AUTHZ_503), (FAILED, 500)),
    (Answer(401, JSON, b"{not json"), (FAILED, 401)),
    (ConnectionResetError(), (FAILED, None)),
])
def test_classify(answer: Answer | Exception, expected: tuple[str, int | None]) -> None:
    assert classify(answer) == expected
