"""The admin API's ``Explain``: the described request in, the :class:`authz.decide.explain.Explanation` out.

The explanation itself is made by the caller-supplied function (:func:`authz.ops.services.explainer`: the running
server's key sources and registry store, a fresh pipeline); this module only converts messages.
"""

from __future__ import annotations

from authz.admin.v1 import admin_pb2 as pb
from authz.decide.explain import Explanation
from authz.envoy.requests import described_request
from authz.errors import Denial
from authz.model import Request
from authz.registry.store import RegistryError

_VERDICTS = {True: "passed", False: "failed", None: "info"}


def request_of(message: pb.ExplainRequest) -> Request:
    """The :class:`Request` an ``ExplainRequest`` describes.

    Raises:
        RegistryError: ``invalid`` (INVALID_ARGUMENT) without a path, or past the front ends' limits.
    """
    if not message.path:
        raise RegistryError("invalid", "is required", "path")
    try:
        return described_request(message.method or "GET", message.path, token=message.token, host=message.host,
                                 api_id=message.api_id, environment=message.environment,
                                 headers=sorted(message.headers.items()))
    except Denial as denial:
        raise RegistryError("invalid", denial.description, "headers") from None


def response_of(explanation: Explanation) -> pb.ExplainResponse:
    """The ``ExplainResponse`` of an explanation."""
    return pb.ExplainResponse(
        result=explanation.result, phase=explanation.phase, code=explanation.code,
        http_status=explanation.http_status, message=explanation.message, description=explanation.description,
        detail=explanation.detail,
        headers=[pb.ExplainHeader(name=n, value=v) for n, v in explanation.headers],
        headers_to_remove=list(explanation.headers_to_remove), metadata=dict(explanation.metadata),
        phases=[pb.ExplainPhase(name=p.name, outcome=p.outcome, steps=[
            pb.ExplainStep(name=s.name, seen=s.seen, rule=s.rule, verdict=_VERDICTS[s.ok]) for s in p.steps])
            for p in explanation.phases],
    )
