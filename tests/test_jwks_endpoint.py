"""authz's public JWKS endpoint for backend JWTs: what it serves, and that client garbage cannot flood the log."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from authz.ops.jwks_endpoint import JWKS_PATH, JwksEndpoint

JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "BB", "kid": "k", "alg": "ES256", "use": "sig"}]}


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


async def test_serves_the_jwk_set_and_logs_no_traceback_for_malformed_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = JwksEndpoint(JWKS, "127.0.0.1:0")
    await endpoint.start()
    caplog.set_level(logging.DEBUG)
    try:
        ok = await _raw(endpoint.port, f"GET {JWKS_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head, _, body = ok.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"application/jwk-set+json" in head
        assert json.loads(body) == JWKS
        for _ in range(3):
            bad = await _raw(endpoint.port, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert bad.split(b" ", 2)[1] == b"400"
    finally:
        await endpoint.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_other_paths_are_404_other_methods_405_and_head_has_no_body() -> None:
    endpoint = JwksEndpoint(JWKS, "127.0.0.1:0")
    await endpoint.start()
    try:
        missing = await _raw(endpoint.port, b"GET /jwks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert missing.startswith(b"HTTP/1.1 404 Not Found\r\n")
        post = await _raw(endpoint.port, f"POST {JWKS_PATH} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
        assert post.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
        assert b"\r\nallow: GET, HEAD\r\n" in post
        head = await _raw(endpoint.port, f"HEAD {JWKS_PATH}?v=1 HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"cache-control: public, max-age=300\r\n" in head
        assert head.endswith(b"\r\n\r\n")  # headers only
    finally:
        await endpoint.close()
