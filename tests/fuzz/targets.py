"""The fuzz targets of the atheris harness (tests/fuzz/harness.py) and its seed corpus (tests/fuzz/corpus/).

Targets (each input is raw bytes from libFuzzer):

* ``bearer``: the ``authorization`` header value -> :func:`authz.decide.credentials.extract_bearer`;
* ``path``: a ``:path`` -> :func:`authz.decide.routes.normalize_path` and the route table;
* ``jws``: a token -> :class:`authz.decide.identity.TokenValidator` (a static ES256 key, no network);
* ``check``: a serialized ``CheckRequest`` -> ``AuthorizationServicer.Check`` over the pipeline on the in-memory
  registry.

The properties are those of tests/test_fuzz.py: only the documented denials, never another exception, never an
allow without the one valid token. ``@TOKEN@`` in an input stands for a token signed with the harness's key at
start-up (the corpus stays valid however old it is). A failed property raises (libFuzzer saves the input).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.config import parse_config
from authz.decide.credentials import _OTHER_SCHEMES, extract_bearer
from authz.decide.identity import TokenValidator
from authz.decide.routes import RouteTable, normalize_path
from authz.dev.signing import SigningKey
from authz.envoy.grpc_service import AuthorizationServicer, adapt
from authz.errors import Denial, Reason
from authz.keys.static import StaticKeys
from authz.model import Identity
from authz.ops.services import assemble_pipeline
from authz.registry.admin import RegistryAdmin
from authz.registry.cache import RegistryCache
from authz.registry.memory import MemoryStore
from tests.fuzz.harness import TARGETS
from tests.fuzz.strategies import B64TOKEN_SYNTAX

CORPUS = Path(__file__).with_name("corpus")
PLACEHOLDER = "@TOKEN@"
ISSUER = "https://idp.fuzz.test"
AUDIENCE = "authz-fuzz"
# A fixed key (derived from a constant), so that a saved input means the same thing in every run.
KEY = SigningKey(kid="fuzz-1", alg="ES256", private_key=ec.derive_private_key(0x5EED_F022_11A, ec.SECP256R1()))


class Harness:
    """Everything the targets need, built once: a valid token, the pipeline, the servicer, an event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._dir = tempfile.TemporaryDirectory(prefix="authz-fuzz-")
        pem = Path(self._dir.name) / "fuzz-key.pub.pem"
        pem.write_bytes(KEY.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        apis = yaml.safe_load(Path("config/authz.yaml").read_text(encoding="utf-8"))["apis"]
        apis[0]["resources"].append({"path": "/public/**", "methods": ["GET"], "auth": "none"})
        self.settings = parse_config({
            "key_managers": [{"name": "fuzz-km", "issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["ES256"],
                              "certificates": [{"path": str(pem), "kid": KEY.kid}]}],
            "apis": apis,
        })
        self.token = self._sign({"iss": ISSUER, "aud": AUDIENCE, "azp": "demo-client", "sub": "fuzz",
                                 "scope": "orders:read", "iat": int(time.time()), "exp": int(time.time()) + 3000,
                                 "jti": "fuzz-jti"})
        self.keys = {"fuzz-km": StaticKeys("fuzz-km", self.settings.key_managers[0].certificates)}
        self.validator = TokenValidator(self.settings.key_managers, self.keys, self.settings.tokens)
        self.store = MemoryStore()
        self.registry = RegistryCache(self.store, self.settings.redis)
        self.loop.run_until_complete(self._seed())
        self.pipeline = assemble_pipeline(self.settings, self.keys, self.registry, None)
        self.servicer = AuthorizationServicer(self.pipeline, "authz")
        self.routes = RouteTable(self.settings.apis)
        self.outcomes: collections.Counter[str] = collections.Counter()

    @staticmethod
    def _sign(claims: dict[str, Any]) -> str:
        import jwt  # noqa: PLC0415

        return jwt.encode(claims, KEY.private_key, algorithm="ES256", headers={"kid": KEY.kid})

    async def _seed(self) -> None:
        admin = RegistryAdmin(self.store, self.settings)
        await admin.create_application("Demo App", app_id="demo-app")
        await admin.add_client("demo-app", "demo-client")
        await admin.subscribe("demo-app", "orders-v1")

    def text(self, data: bytes) -> str:
        return data.decode("utf-8", "replace").replace(PLACEHOLDER, self.token)

    # ---- targets ----

    def bearer(self, data: bytes) -> None:
        value = self.text(data)
        try:
            token = extract_bearer({"authorization": value})
        except Denial as denial:
            assert denial.reason in (Reason.MISSING_CREDENTIALS, Reason.INVALID_REQUEST, Reason.INVALID_CREDENTIALS)
            if denial.reason is Reason.MISSING_CREDENTIALS:
                assert value.strip(" \t").partition(" ")[0].lower() in _OTHER_SCHEMES, value
            return
        assert B64TOKEN_SYNTAX.fullmatch(token) and value.rstrip(" \t").endswith(token), value

    def path(self, data: bytes) -> None:
        from authz.model import Request  # noqa: PLC0415

        raw = self.text(data)
        try:
            path = normalize_path(raw)
        except Denial as denial:
            assert denial.reason is Reason.INVALID_REQUEST
            return
        segments = path.split("/")[1:]
        assert path.startswith("/") and "//" not in path and "." not in segments and ".." not in segments, path
        assert normalize_path(path) == path, path
        try:
            route = self.routes.resolve(Request("GET", raw, "api.example.test", {}, {}))
        except Denial as denial:
            assert denial.reason in (Reason.INVALID_REQUEST, Reason.NO_MATCHING_RESOURCE)
            return
        context = route.api.context.rstrip("/")
        assert route.path == context or route.path.startswith(context + "/"), route

    def jws_input(self, data: bytes) -> str:
        """The token an input stands for. Its first byte picks how the rest is read: 0 the token's text; 1 one
        segment of the valid token replaced (the next byte picks which) by the rest; 2 the valid token with
        bytes overwritten (pairs of position, value)."""
        mode, rest = (data[0] % 3, data[1:]) if data else (0, b"")
        if mode == 0:
            return self.text(rest)
        if mode == 1:
            parts = self.token.split(".")
            if rest:
                parts[rest[0] % 3] = rest[1:].decode("latin-1")
            return ".".join(parts)
        edited = bytearray(self.token.encode("ascii"))
        for position, value in zip(rest[::2], rest[1::2], strict=False):
            edited[position % len(edited)] = value
        return edited.decode("latin-1")

    def jws(self, data: bytes) -> None:
        token = self.jws_input(data)
        try:
            identity = self.loop.run_until_complete(self.validator.validate(token))
        except Denial as denial:
            assert denial.reason in (Reason.INVALID_CREDENTIALS, Reason.EXPIRED_TOKEN)
            return
        assert isinstance(identity, Identity) and decoded(token) == decoded(self.token), token

    def check(self, data: bytes) -> None:
        try:
            message = CheckRequest.FromString(data)
        except Exception:  # noqa: BLE001 - not a message: the gRPC layer answers 400 (tests/test_grpc_adapter.py)
            return
        http = message.attributes.request.http
        for name, value in list(http.headers.items()):
            if PLACEHOLDER in value:
                http.headers[name] = value.replace(PLACEHOLDER, self.token)
        for entry in http.header_map.headers:
            entry.value = entry.value.replace(PLACEHOLDER, self.token)
        answer = self.loop.run_until_complete(self.servicer.Check(message, None))  # type: ignore[arg-type]
        response = CheckResponse.FromString(answer) if isinstance(answer, bytes) else answer
        code = response.status.code
        assert code in (0, 7, 16), code
        self.outcomes["allow" if code == 0 else f"deny {response.denied_response.status.code}"] += 1
        if code != 0:
            assert response.denied_response.status.code in (400, 401, 403), response
            return
        values = [v for k, v in http.headers.items() if k.lower() == "authorization"]
        values += [e.value or e.raw_value.decode("utf-8", "replace") for e in http.header_map.headers
                   if e.key.lower() == "authorization"]
        if not values:
            assert self.routes.resolve(adapt(message)).resource.auth == "none"
            return
        assert len(values) == 1 and values[0].strip(" \t").partition(" ")[2].strip(" \t") == self.token, values


def decoded(token: str) -> tuple[str, bytes] | None:
    """(signing input, signature bytes) of a compact JWS, or None when it has no three segments."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return f"{parts[0]}.{parts[1]}", base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except ValueError:
        return None


# ---- the seed corpus -------------------------------------------------------------------------------------------

SEEDS: dict[str, list[str]] = {
    "bearer": [f"Bearer {PLACEHOLDER}", f"bearer   {PLACEHOLDER} ", f"Bearer {PLACEHOLDER},Bearer x", "Basic dXNlcjpwYXNz",
               "Bearer", "Bearer<x>", "Token abc", "Digest username=\"u\", realm=\"r\"", "Bearer a b", "Bea x",
               "Bearer \u00e9", "Bearer abc==", "Basic a, Bearer b"],
    "path": ["/orders/v1/items", "/orders/v1/public/../../payments/v1/charges", "/orders/v1/%2e%2e/x",
             "/orders/v1/items%2F1", "//orders//v1/items/", "/orders/v1/items;x=1", "/ORDERS/v1/items",
             "/orders/v1/public\\..\\x", "/orders/v1/items?next=/payments", "/orders/v1/items#frag", "/%zz", "",
             "/orders/v1/public/%7e"],
    "jws": ["\x00" + seed for seed in (PLACEHOLDER, f"{PLACEHOLDER}=", f"{PLACEHOLDER}.x", "a.b.c", "..",
                                         "eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA", "e30.e30.e30",
                                         PLACEHOLDER.lower())]
           + ["\x01\x01eyJpc3MiOiJodHRwczovL2lkcC5mdXp6LnRlc3QifQ", "\x01\x00eyJhbGciOiJub25lIn0",
              "\x02\x05A\x30B"],
}


def check_seeds() -> list[bytes]:
    """Serialized ``CheckRequest`` seeds: allowed, denied and malformed shapes."""
    out = []
    for method, path, auth, ext in [
        ("GET", "/orders/v1/items", f"Bearer {PLACEHOLDER}", {"api_id": "orders-v1"}),
        ("GET", "/orders/v1/items", f"Bearer {PLACEHOLDER}", {}),
        ("POST", "/orders/v1/items", f"Bearer {PLACEHOLDER}", {}),
        ("GET", "/payments/v1/charges", f"Bearer {PLACEHOLDER}", {}),
        ("GET", "/orders/v1/public/status", None, {}),
        ("GET", "/orders/v1/public/../items", None, {}),
        ("GET", "/orders/v1/items", "Bearer a.b.c", {"api_id": "nope"}),
        ("GET", "/orders/v1/items", f"Bearer {PLACEHOLDER},Bearer {PLACEHOLDER}", {}),
        ("GET", "/orders/v1/items", f"Bearer {PLACEHOLDER}", {"environment": "sandbox"}),
    ]:
        req = CheckRequest()
        http = req.attributes.request.http
        http.method, http.path, http.host = method, path, "api.example.test"
        if auth is not None:
            http.headers["authorization"] = auth
        http.headers["x-client-id"] = "spoofed"
        for k, v in ext.items():
            req.attributes.context_extensions[k] = v
        out.append(req.SerializeToString())
    twice = CheckRequest()
    twice.attributes.request.http.headers["Authorization"] = f"Bearer {PLACEHOLDER}"
    twice.attributes.request.http.headers["authorization"] = f"Bearer {PLACEHOLDER}"
    twice.attributes.request.http.path = "/orders/v1/items"
    raw = twice.attributes.request.http.header_map.headers.add()
    raw.key, raw.raw_value = "authorization", f"Bearer {PLACEHOLDER}".encode()
    out.append(twice.SerializeToString())
    return out


def write_corpus() -> None:
    """Rewrite tests/fuzz/corpus/<target>/ from :data:`SEEDS` and :func:`check_seeds`."""
    for target in TARGETS:
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        seeds = check_seeds() if target == "check" else [s.encode() for s in SEEDS[target]]
        for i, seed in enumerate(seeds):
            (d / f"seed-{i:02d}").write_bytes(seed)


def replay(harness: Harness | None = None) -> int:
    """Run every seed of every target once (no atheris). Returns how many inputs ran; raises on a failure."""
    harness = harness or Harness()
    count = 0
    for target in TARGETS:
        for path in sorted((CORPUS / target).iterdir()):
            getattr(harness, target)(path.read_bytes())
            count += 1
    return count
