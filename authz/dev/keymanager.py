"""Demo key manager: a tiny OAuth2 / OIDC identity provider for development and tests.

DEVELOPMENT AID, NOT FOR PRODUCTION. It keeps clients and users in memory with plain-text secrets,
signs JWT access tokens with in-process keys and serves:

- ``POST /oauth2/token`` (RFC 6749: ``password`` and ``client_credentials`` grants, client authentication
  by form fields or HTTP Basic, RFC 6749 section 2.3.1),
- ``GET /oauth2/jwks`` (the published JSON Web Key Set),
- ``GET /.well-known/openid-configuration`` (OIDC discovery document; also under the issuer's path,
  ``{issuer path}/.well-known/openid-configuration``),
- ``GET /.well-known/oauth-authorization-server{issuer path}`` (RFC 8414 metadata, the same document).

``start(ssl_context=...)`` serves HTTPS instead of HTTP.

Tests use :class:`KeyManager` in-process; ``python -m authz.dev.keymanager`` runs it standalone.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import hmac
import json
import logging
import signal
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import jwt

from authz.dev.httpserver import ServedInThread
from authz.dev.signing import SigningKey

log = logging.getLogger(__name__)

DEMO_CLIENTS: dict[str, str] = {"demo-client": "demo-secret", "other-client": "other-secret"}
"""Demo OAuth2 clients (client_id -> client_secret) used by the standalone server."""

DEMO_USERS: dict[str, str] = {"demo": "demo"}
"""Demo resource owners (username -> password) used by the standalone server."""

REALM = "demo-key-manager"
MAX_BODY_BYTES = 64 * 1024

class _TokenError(Exception):
    """An RFC 6749 section 5.2 error response."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description


class KeyManager(ServedInThread):
    """In-memory OAuth2 authorization server issuing JWT access tokens (development aid).

    Args:
        audience: value of the ``aud`` claim.
        clients: client_id -> client_secret.
        users: username -> password (for the ``password`` grant).
        token_lifetime: default access token lifetime in seconds.
        keys: signing keys; the first one signs by default. Defaults to one fresh RSA-2048 key.
        issuer: value of the ``iss`` claim, from which discovery URLs are built; None (default): the server's own
            URL plus ``issuer_path``, set by :meth:`start`, as a real IdP's issuer is its URL.
        issuer_path: the path appended to the server's URL to make the default issuer (``/realms/demo``).

    Attributes:
        signing_keys: the keys tokens may be signed with.
        published_keys: the keys served at the JWKS endpoint (initially the signing keys); assign a new
            list to simulate rotation.
        requests: ``collections.Counter`` of requests served, keyed by path (without query string).
        jwks_status: when not 200, the JWKS endpoint answers that status with a JSON error body.
        jwks_delay: seconds the JWKS endpoint sleeps before answering.
        jwks_body: when set, raw bytes served as the JWKS response body instead of the key set.
        jwks_cache_control: the JWKS response's ``Cache-Control`` value (default ``max-age=300``); None: no
            such header.
        discovery_overrides: members replacing or adding to the discovery/metadata document (a value of
            None removes the member), e.g. a wrong ``issuer`` or another ``jwks_uri``.
        port / url: set by :meth:`start`.
    """

    def __init__(
        self,
        audience: str,
        clients: dict[str, str] | None = None,
        users: dict[str, str] | None = None,
        token_lifetime: int = 3600,
        keys: list[SigningKey] | None = None,
        *,
        issuer: str | None = None,
        issuer_path: str = "",
    ) -> None:
        self.issuer: str = issuer or ""
        self._issuer_path = issuer_path if issuer is None else None
        self.audience = audience
        self.clients = dict(DEMO_CLIENTS if clients is None else clients)
        self.users = dict(DEMO_USERS if users is None else users)
        self.token_lifetime = token_lifetime
        self.signing_keys: list[SigningKey] = list(keys) if keys else [SigningKey.generate_rsa()]
        self.published_keys: list[SigningKey] = list(self.signing_keys)
        self.requests: collections.Counter[str] = collections.Counter()
        self._requests_lock = threading.Lock()
        self.jwks_status: int = 200
        self.jwks_delay: float = 0.0
        self.jwks_body: bytes | None = None
        self.jwks_cache_control: str | None = "max-age=300"
        self.discovery_overrides: dict[str, Any] = {}
        super().__init__()

    # ----------------------------------------------------------------------------------- tokens

    @property
    def signing_key(self) -> SigningKey:
        """The default signing key (the first of ``signing_keys``)."""
        return self.signing_keys[0]

    def issue_token(
        self,
        client_id: str,
        subject: str,
        scope: str,
        extra_claims: dict[str, Any] | None = None,
        lifetime: int | None = None,
        key: SigningKey | None = None,
    ) -> str:
        """Sign and return a JWT access token (compact serialization).

        Claims: ``iss, sub, aud, azp, client_id, scope, iat, nbf, exp, jti`` (times in epoch seconds);
        ``extra_claims`` override or add claims (a value of ``None`` removes the claim). Header:
        ``typ: at+jwt``, ``kid`` and the key's ``alg``.

        Args:
            client_id: OAuth2 client the token is issued to (``azp`` and ``client_id`` claims).
            subject: ``sub`` claim.
            scope: space-separated scopes (``scope`` claim).
            extra_claims: claims to override/add.
            lifetime: seconds until ``exp``; defaults to ``token_lifetime``.
            key: signing key; defaults to :attr:`signing_key`.
        """
        key = key or self.signing_key
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "azp": client_id,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + (self.token_lifetime if lifetime is None else lifetime),
            "jti": uuid.uuid4().hex,
        }
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"typ": "at+jwt", "kid": key.kid})

    def jwks(self) -> dict[str, Any]:
        """The published JSON Web Key Set: ``{"keys": [public JWK dict, ...]}``."""
        return {"keys": [k.public_jwk() for k in self.published_keys]}

    def discovery(self) -> dict[str, Any]:
        """The OIDC discovery document, URLs built from the issuer."""
        base = self.issuer.rstrip("/")
        algs = sorted({k.alg for k in self.signing_keys})
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "jwks_uri": f"{base}/oauth2/jwks",
            "token_endpoint": f"{base}/oauth2/token",
            "grant_types_supported": ["password", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": algs,
            "response_types_supported": ["token"],
        }
        for name, value in self.discovery_overrides.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        return document

    def _metadata_paths(self) -> set[str]:
        """Paths answering with the discovery document: OIDC (root and under the issuer's path), RFC 8414."""
        issuer_path = urlsplit(self.issuer).path.rstrip("/")
        return {
            "/.well-known/openid-configuration",
            f"{issuer_path}/.well-known/openid-configuration",
            f"/.well-known/oauth-authorization-server{issuer_path}",
        }

    def _count(self, path: str) -> None:
        with self._requests_lock:
            self.requests[path] += 1

    # ----------------------------------------------------------------------------- token endpoint

    def _authenticate_client(self, form: dict[str, str], authorization: str | None) -> str:
        """Return the authenticated client_id or raise ``_TokenError`` (401 invalid_client / 400)."""
        basic_id = basic_secret = None
        if authorization and authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise _TokenError(401, "invalid_client", "malformed HTTP Basic credentials") from None
            if ":" not in decoded:
                raise _TokenError(401, "invalid_client", "malformed HTTP Basic credentials")
            raw_id, raw_secret = decoded.split(":", 1)
            basic_id, basic_secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        form_id, form_secret = form.get("client_id"), form.get("client_secret")
        if basic_id is not None and form_secret is not None:
            raise _TokenError(400, "invalid_request", "use only one client authentication method")
        if basic_id is not None:
            if form_id is not None and form_id != basic_id:
                raise _TokenError(400, "invalid_request", "client_id does not match the authenticated client")
            client_id, secret = basic_id, basic_secret
        else:
            client_id, secret = form_id, form_secret
        if not client_id or secret is None:
            raise _TokenError(401, "invalid_client", "client authentication required")
        expected = self.clients.get(client_id)
        if expected is None or not _consteq(expected, secret):
            raise _TokenError(401, "invalid_client", "client authentication failed")
        return client_id

    def _token_response(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _TokenError(400, "invalid_request", "missing grant_type")
        if grant_type not in ("password", "client_credentials"):
            raise _TokenError(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        client_id = self._authenticate_client(form, authorization)
        scope = form.get("scope", "")
        if any(not (0x21 <= ord(c) <= 0x7E) or c in '"\\' for c in scope.replace(" ", "")):
            raise _TokenError(400, "invalid_scope", "scope contains invalid characters")
        scope = " ".join(scope.split())
        if grant_type == "password":
            username, password = form.get("username"), form.get("password")
            if not username or password is None:
                raise _TokenError(400, "invalid_request", "username and password are required")
            expected = self.users.get(username)
            if expected is None or not _consteq(expected, password):
                raise _TokenError(400, "invalid_grant", "invalid resource owner credentials")
            subject = username
        else:
            subject = client_id
        token = self.issue_token(client_id, subject, scope)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": scope,
        }

    # ------------------------------------------------------------------------------------ server

    def start(self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve HTTP on ``host:port`` (0 = ephemeral) in a daemon thread; sets ``port`` and ``url``.

        With ``ssl_context`` (a server-side context with its certificate loaded) it serves HTTPS and ``url``
        starts with ``https://``.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound.
        """
        handler = type("_BoundHandler", (_Handler,), {"km": self})
        self._serve(handler, host, port, "demo-key-manager", ssl_context)
        if self._issuer_path is not None:
            self.issuer = self.url + self._issuer_path
        log.info(
            "demo key manager (development aid, NOT for production) listening on %s, issuer %s",
            self.url,
            self.issuer,
        )


def _consteq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class _Handler(BaseHTTPRequestHandler):
    km: KeyManager
    protocol_version = "HTTP/1.1"
    server_version = "demo-key-manager"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            return None
        if n < 0 or n > MAX_BODY_BYTES:
            return None
        return self.rfile.read(n)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self._path()
        self.km._count(path)
        try:
            if path == "/oauth2/jwks":
                self._serve_jwks()
            elif path in self.km._metadata_paths():
                self._json(200, self.km.discovery(), {"Cache-Control": "max-age=300"})
            else:
                self._json(404, {"error": "not_found", "error_description": f"no such endpoint {path}"})
        except Exception:
            log.exception("demo key manager failed on GET %s", path)
            self._json(500, {"error": "server_error", "error_description": "internal error"})

    def _serve_jwks(self) -> None:
        km = self.km
        if km.jwks_delay > 0:
            time.sleep(km.jwks_delay)
        if km.jwks_status != 200:
            self._json(km.jwks_status, {"error": "server_error", "error_description": "injected JWKS fault"})
        else:
            headers = {"Cache-Control": km.jwks_cache_control} if km.jwks_cache_control is not None else {}
            if km.jwks_body is not None:
                self._send(200, km.jwks_body, "application/json", headers)
            else:
                self._json(200, km.jwks(), headers)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = self._path()
        self.km._count(path)
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._json(400, {"error": "invalid_request", "error_description": "bad or missing Content-Length"})
            return
        if path != "/oauth2/token":
            self._json(404, {"error": "not_found", "error_description": f"no such endpoint {path}"})
            return
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if ctype != "application/x-www-form-urlencoded":
                raise _TokenError(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
            try:
                parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
            except (UnicodeDecodeError, ValueError):
                raise _TokenError(400, "invalid_request", "malformed form body") from None
            repeated = sorted(k for k, v in parsed.items() if len(v) > 1)
            if repeated:
                raise _TokenError(400, "invalid_request", f"repeated parameter(s): {', '.join(repeated)}")
            form = {k: v[0] for k, v in parsed.items()}
            self._json(200, self.km._token_response(form, self.headers.get("Authorization")), no_store)
        except _TokenError as err:
            headers = dict(no_store)
            if err.status == 401:
                headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
            self._json(err.status, {"error": err.error, "error_description": err.description}, headers)
        except Exception:
            log.exception("demo key manager failed on POST %s", path)
            self._json(500, {"error": "server_error", "error_description": "internal error"}, no_store)

    def _not_allowed(self) -> None:
        path = self._path()
        self.km._count(path)
        self._read_body()
        self._json(405, {"error": "method_not_allowed", "error_description": f"{self.command} not allowed"},
                   {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815 - stdlib naming


def load_or_create_key(path: Path) -> SigningKey:
    """Load the RSA key PEM at ``path``, or generate one and write it there (mode 0600)."""
    if path.exists():
        return SigningKey.from_pem(path.read_bytes())
    key = SigningKey.generate_rsa()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(key.private_pem())
    return key


def main(argv: list[str] | None = None) -> int:
    """Run the demo key manager standalone until interrupted. Returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m authz.dev.keymanager",
        description="Demo OAuth2/OIDC key manager. Development aid, NOT for production.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--issuer", default=None, help="iss claim (default: the server's URL, http://HOST:PORT)")
    parser.add_argument("--audience", default="authz-demo")
    parser.add_argument("--lifetime", type=int, default=3600, help="token lifetime in seconds")
    parser.add_argument("--key-file", type=Path, default=None, help="persist the RSA private key as PEM here")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keys = [load_or_create_key(args.key_file)] if args.key_file else None
    km = KeyManager(args.audience, DEMO_CLIENTS, DEMO_USERS, token_lifetime=args.lifetime, keys=keys, issuer=args.issuer)
    km.start(args.host, args.port)
    stop = threading.Event()
    try:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        km.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
