"""Identity phase: validate a JWT access token (RFC 7519, RFC 7515, RFC 9068) with pyjwt.

Order of checks, so that an attacker can make authz neither fetch URLs nor raise:

1. size (``tokens.max_size`` bytes) before any parsing;
2. unverified header and payload: ``iss`` must be a string naming a configured key manager (picked
   before any network call), ``alg`` must be in that key manager's allow-list (asymmetric only),
   ``typ`` must be accepted when the key manager lists types (RFC 9068 ``at+jwt``), ``exp``/``nbf``/``iat``
   must be finite numbers and ``exp`` within ``max_token_lifetime``; ``jku``, ``x5u`` and ``jwk`` headers are
   never used;
3. key from the key manager's JWKS cache (by ``kid``, or the single fitting key without ``kid``);
4. pyjwt verifies the signature with that one algorithm, then ``iss`` (one trailing ``/`` ignored),
   ``aud`` (any-of), ``exp`` (required), ``nbf`` and ``iat`` with the key manager's leeway, and the
   presence of ``required_claims``;
5. client ID and scopes from the key manager's ordered claim lists.

Verified tokens are cached (LRU, keyed by the exact token string) until ``min(exp, cache_max_ttl)``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jwt

from authz.cache import BoundedCache
from authz.config import KeyManagerSettings, TokenSettings, normalize_issuer
from authz.errors import Denial, Reason
from authz.keys.jwk import KeySource, VerificationKey
from authz.model import MAX_TOKEN_ID_LENGTH, Identity, Step

log = logging.getLogger("authz.tokens")

_TIME_CLAIMS = ("exp", "nbf", "iat")
# Exceptions pyjwt (and the JSON/base64 layers under it) raise on hostile input besides PyJWTError.
_PARSE_ERRORS = (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError, RecursionError, AttributeError)


def _invalid(description: str, detail: str | None = None) -> Denial:
    return Denial(Reason.INVALID_CREDENTIALS, description, log_detail=detail)


def _check_numeric_date(payload: Mapping[str, Any], claim: str) -> None:
    value = payload.get(claim)
    if value is None and claim not in payload:
        return
    # Reject non-numbers (bool is an int in Python), NaN/Infinity, and integers too large for a float
    # (math.isfinite and float() raise OverflowError on them, and pyjwt/Identity convert to float).
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite_float(value):
        raise _invalid(f"The access token has an invalid time claim '{claim}'")


def _finite_float(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _typ_accepted(typ: Any, accepted: list[str]) -> bool:
    """RFC 7515 section 4.1.9: media types compare case-insensitively and ``application/`` may be omitted."""
    if not isinstance(typ, str):
        return False

    def bare(value: str) -> str:
        value = value.lower()
        return value[len("application/"):] if value.startswith("application/") else value

    return bare(typ) in {bare(a) for a in accepted}


def client_id_of(payload: Mapping[str, Any], claims: list[str], trace: list[Step] | None = None) -> str:
    """The OAuth2 client ID: the first of ``claims`` present in the payload.

    Args:
        payload: verified token claims.
        claims: ordered claim names (``azp``, ``client_id``, ``cid``, ``appid``...).
        trace: when given, a ``client_id`` step naming the claim used.
    Returns:
        The non-empty string value.
    Raises:
        Denial: ``INVALID_CREDENTIALS`` when none is present, or the first present one is not a non-empty string.
    """
    rule = f"the first present of {', '.join(claims)}: a non-empty string"
    for claim in claims:
        if claim in payload:
            value = payload[claim]
            ok = isinstance(value, str) and bool(value)
            if trace is not None:
                trace.append(Step("client_id", f"{claim}={_shown(value)}", rule, ok))
            if ok:
                return value
            raise _invalid(f"The access token's client identifier claim '{claim}' is not a non-empty string")
    if trace is not None:
        trace.append(Step("client_id", "none of the claims present", rule, False))
    raise _invalid(f"The access token has no client identifier (looked for: {', '.join(claims)})")


def token_id_of(payload: Mapping[str, Any]) -> str | None:
    """The ``jti`` (RFC 7519 section 4.1.7), or None when absent.

    Raises:
        Denial: ``INVALID_CREDENTIALS`` for a ``jti`` that could not be revoked: not a string, empty, longer
            than :data:`MAX_TOKEN_ID_LENGTH` characters or with control characters.
    """
    if "jti" not in payload:
        return None
    jti = payload["jti"]
    if (not isinstance(jti, str) or not jti or len(jti) > MAX_TOKEN_ID_LENGTH
            or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in jti)):
        raise _invalid("The access token's 'jti' is not a valid token identifier")
    return jti


def scopes_of(payload: Mapping[str, Any], claims: list[str], trace: list[Step] | None = None) -> frozenset[str]:
    """The token's scopes from the first of ``claims`` present (RFC 8693 ``scope``, or ``scp``).

    Args:
        payload: verified token claims.
        claims: ordered claim names; the first present wins, never a union.
        trace: when given, a ``scopes`` step naming the claim used and the scopes read.
    Returns:
        A space-separated string split on runs of spaces, or the string members of a list; an empty set
        for any other type.
    """
    found, used = frozenset[str](), "none of the claims present"
    for claim in claims:
        if claim in payload:
            value = payload[claim]
            if isinstance(value, str):
                found = frozenset(s for s in value.split(" ") if s)
            elif isinstance(value, list):
                found = frozenset(s for s in value if isinstance(s, str) and s)
            used = claim
            break
    if trace is not None:
        trace.append(Step("scopes", f"{used}: {' '.join(sorted(found)) or '(none)'}",
                          f"the first present of {', '.join(claims)} (a space-separated string or a list)", None))
    return found


class TokenValidator:
    """Validates bearer tokens against the configured key managers.

    Args:
        key_managers: the configured key managers (``key_managers``).
        keys: the key source of each key manager, by key manager name.
        limits: the ``tokens`` section (``max_size``, ``cache_size``, ``cache_max_ttl``).
        clock: wall clock in seconds since the epoch (tests may pass their own).
    """

    def __init__(
        self,
        key_managers: Sequence[KeyManagerSettings],
        keys: Mapping[str, KeySource],
        limits: TokenSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._by_issuer: dict[str, KeyManagerSettings] = {km.normalized_issuer: km for km in key_managers}
        self._keys = keys
        self._max_size = limits.max_size
        self._cache_ttl = limits.cache_max_ttl
        # exact token string -> (identity, the key that verified it); deadlines on the wall clock, as exp is.
        self._cache: BoundedCache[str, tuple[Identity, VerificationKey]] = BoundedCache(
            "tokens", limits.cache_size, clock=clock)
        self._clock = clock

    @property
    def cached_tokens(self) -> int:
        """Number of verified tokens currently cached."""
        return len(self._cache)

    def cached(self, token: str) -> Identity | None:
        """The identity of an already verified token, while its cache entry is valid.

        Valid means: before ``min(exp + leeway, verified + cache_max_ttl)`` and its key still in the key
        manager's current key set. An entry that is no longer valid is dropped.

        Args:
            token: the exact bearer token string.
        Returns:
            The cached :class:`Identity` (the same object every time), or None.
        """
        cached = self._cache.get(token)
        if cached is None:
            return None
        identity, key = cached
        if self._keys[identity.key_manager].contains(key):
            return identity
        self._cache.discard(token)
        return None

    async def validate(self, token: str, trace: list[Step] | None = None) -> Identity:
        """Validate ``token`` and return who it identifies.

        Args:
            token: the bearer token (b64token syntax, already extracted).
            trace: when given (``authz explain``), every rule applied is added to it as a
                :class:`authz.model.Step`, with the value seen; the verified-token cache is then not consulted.
        Returns:
            The :class:`Identity`.
        Raises:
            Denial: ``INVALID_CREDENTIALS`` (malformed, bad signature, wrong issuer/audience/algorithm,
                not yet valid, no client ID) or ``EXPIRED_TOKEN``.
            DependencyUnavailable: the issuer's key set cannot be had (503).
        """
        too_large = len(token) > self._max_size
        if trace is not None:
            trace.append(Step("size", f"{len(token)} bytes", f"at most tokens.max_size ({self._max_size})",
                              not too_large))
        if too_large:
            raise _invalid(f"The access token is larger than {self._max_size} bytes")
        if trace is None:
            identity = self.cached(token)
            if identity is not None:
                return identity
        now = self._clock()
        km, alg, kid, unverified = self._preflight(token, now, trace)
        key = await self._keys[km.name].signing_key(kid, alg, trace)
        payload = self._verify(token, km, alg, key, unverified, now, trace)
        identity = Identity(
            key_manager=km.name,
            issuer=payload["iss"],
            subject=payload["sub"] if isinstance(payload.get("sub"), str) else "",
            client_id=client_id_of(payload, km.client_id_claims, trace),
            scopes=scopes_of(payload, km.scope_claims, trace),
            expires_at=float(payload["exp"]),
            token_id=token_id_of(payload),
            claims=payload,
        )
        self._cache.put(token, (identity, key), min(identity.expires_at + km.leeway - now, self._cache_ttl))
        return identity

    def _preflight(
        self, token: str, now: float, trace: list[Step] | None
    ) -> tuple[KeyManagerSettings, str, str | None, dict[str, Any]]:
        try:
            unverified = jwt.decode_complete(token, options={"verify_signature": False})
        except _PARSE_ERRORS as exc:
            if trace is not None:
                trace.append(Step("format", f"{type(exc).__name__}: {exc}"[:200],
                                  "a JWS compact serialization with a JSON header and payload", False))
            raise _invalid("The access token is not a well-formed JWT", f"{type(exc).__name__}: {exc}") from None
        header, payload = unverified["header"], unverified["payload"]
        if trace is not None:
            trace.append(Step("header", f"alg={_shown(header.get('alg'))} kid={_shown(header.get('kid'))} "
                              f"typ={_shown(header.get('typ'))}", "the JWS header, read before any check", None))
        if not isinstance(payload, dict):
            raise _invalid("The access token's payload is not a JSON object")
        iss = payload.get("iss")
        km = self._by_issuer.get(normalize_issuer(iss)) if isinstance(iss, str) else None
        if trace is not None:
            trace.append(Step("key manager", f"iss={_shown(iss)} -> {km.name if km else 'none'}",
                              "iss equals the issuer of a configured key manager (one trailing '/' ignored); chosen "
                              "before anything is fetched", km is not None))
        if not isinstance(iss, str):
            raise _invalid("The access token has no issuer ('iss')")
        if km is None:
            raise _invalid("The access token's issuer is not accepted", f"unknown issuer {iss[:200]!r}")
        if "crit" in header:
            raise _invalid("The access token uses critical header parameters that are not supported")
        alg = header.get("alg")
        alg_ok = isinstance(alg, str) and alg in km.algorithms
        if trace is not None:
            trace.append(Step("alg", _shown(alg), f"one of {km.name}'s algorithms: {', '.join(km.algorithms)}", alg_ok))
        if not alg_ok:
            raise _invalid(
                "The access token's signing algorithm is not accepted",
                f"key manager {km.name}: alg {str(alg)[:40]!r} not in {km.algorithms}",
            )
        assert isinstance(alg, str)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _invalid("The access token's 'kid' header is not a string")
        typ_ok = not km.typ or _typ_accepted(header.get("typ"), km.typ)
        if trace is not None:
            trace.append(Step("typ", _shown(header.get("typ")), f"one of {', '.join(km.typ)} (case-insensitive, "
                              "'application/' optional)" if km.typ else "any (the key manager lists no typ)", typ_ok))
        if not typ_ok:
            raise _invalid(
                "The access token's type ('typ' header) is not accepted",
                f"key manager {km.name}: typ {str(header.get('typ'))[:40]!r} not in {km.typ}",
            )
        for claim in _TIME_CLAIMS:
            _check_numeric_date(payload, claim)
        exp = payload.get("exp")
        if km.max_token_lifetime is not None and isinstance(exp, int | float):
            lifetime_ok = exp - now <= km.max_token_lifetime
            if trace is not None:
                trace.append(Step("lifetime", f"exp - now = {exp - now:.0f}s",
                                  f"at most max_token_lifetime ({km.max_token_lifetime:g}s)", lifetime_ok))
            if not lifetime_ok:
                raise _invalid(
                    f"The access token's lifetime exceeds the accepted maximum of {km.max_token_lifetime:g} seconds"
                )
        return km, alg, kid, payload

    def _verify(
        self, token: str, km: KeyManagerSettings, alg: str, key: VerificationKey, unverified: Mapping[str, Any],
        now: float, trace: list[Step] | None,
    ) -> dict[str, Any]:
        issuer = km.normalized_issuer
        failed: str | None = None
        try:
            try:
                return jwt.decode(
                    token,
                    key.key,
                    algorithms=[alg],
                    audience=km.audiences or None,
                    issuer=(issuer, issuer + "/"),
                    leeway=km.leeway,
                    options={"require": ["exp", "iss", *km.required_claims], "verify_aud": bool(km.audiences)},
                )
            except jwt.ExpiredSignatureError:
                failed = "exp"
                raise Denial(Reason.EXPIRED_TOKEN, "The access token expired") from None
            except jwt.InvalidSignatureError:
                failed = "signature"
                raise _invalid("The access token's signature is not valid") from None
            except jwt.InvalidAudienceError:
                failed = "aud"
                raise _invalid("The access token's audience ('aud') is not accepted") from None
            except jwt.ImmatureSignatureError as exc:
                failed = "iat" if "iat" in str(exc) else "nbf"
                raise _invalid("The access token is not yet valid ('nbf' or 'iat' in the future)") from None
            except jwt.InvalidIssuedAtError:
                failed = "iat"
                raise _invalid("The access token has an invalid issued-at time ('iat')") from None
            except jwt.MissingRequiredClaimError as exc:
                failed = exc.claim
                if exc.claim == "aud":
                    # pyjwt reports an empty aud ([] or "") as missing too.
                    raise _invalid("The access token's audience ('aud') is missing or empty") from None
                raise _invalid(f"The access token lacks the required claim '{exc.claim}'") from None
            except jwt.InvalidIssuerError:
                failed = "iss"
                raise _invalid("The access token's issuer is not accepted") from None
            except _PARSE_ERRORS as exc:
                failed = "token"
                raise _invalid("The access token is not valid", f"{type(exc).__name__}: {exc}") from None
        finally:
            if trace is not None:
                trace.extend(claim_steps(km, alg, unverified, now, failed))


def _shown(value: Any) -> str:
    """A claim or header value as ``authz explain`` shows it: JSON, cut to 200 characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def claim_steps(
    km: KeyManagerSettings, alg: str, payload: Mapping[str, Any], now: float, failed: str | None
) -> list[Step]:
    """The signature and claim checks pyjwt made in :meth:`TokenValidator._verify`, as ``authz explain`` steps.

    The verdicts are pyjwt's: all passed when it returned, else the one it stopped at (``failed``: ``signature``,
    a claim name, or ``token`` for another error) failed and the others are not reported (``ok`` None).

    Args:
        km: the key manager (issuer, audiences, leeway, required claims).
        alg: the algorithm verified.
        payload: the token's claims.
        now: the time of the check, seconds since the epoch.
        failed: where pyjwt stopped, or None when it accepted the token.
    """
    def verdict(name: str) -> bool | None:
        if failed is None:
            return True
        return False if failed == name else None

    leeway = f"leeway {km.leeway:g}s"
    exp = payload.get("exp")
    steps = [
        # pyjwt checks the signature before any claim: a claim failure means the signature passed.
        Step("signature", alg, "verifies with the key, by that algorithm only",
             {None: True, "signature": False, "token": None}.get(failed, True)),
        Step("iss", _shown(payload.get("iss")), f"equals {km.normalized_issuer} (one trailing '/' ignored)",
             verdict("iss")),
        Step("aud", _shown(payload.get("aud")), f"contains one of {', '.join(km.audiences)}" if km.audiences
             else "not checked (the key manager lists no audiences)", verdict("aud") if km.audiences else None),
        Step("exp", f"{_shown(exp)}" + (f" ({exp - now:+.0f}s from now)" if isinstance(exp, int | float) else ""),
             f"present, and now < exp + {leeway}", verdict("exp")),
    ]
    for claim, rule in (("nbf", f"now >= nbf - {leeway}"), ("iat", f"a number, and iat <= now + {leeway}")):
        value = payload.get(claim)
        if claim in payload or failed == claim:
            steps.append(Step(claim, _shown(value) + (f" ({value - now:+.0f}s from now)" if isinstance(
                value, int | float) else ""), rule, verdict(claim)))
    steps.extend(Step(c, _shown(payload.get(c)), "present (required_claims)", verdict(c)) for c in km.required_claims)
    return steps
