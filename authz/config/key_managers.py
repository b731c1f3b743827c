"""The ``key_managers[]`` section: the external OAuth2 / OIDC identity providers whose tokens authz accepts."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from authz.config.base import (
    ASYMMETRIC_ALGORITHMS,
    ConfigModel,
    PositiveSeconds,
    media_type,
    normalize_issuer,
)
from authz.keys.pem import load_pem_file
from authz.keys.presets import REQUIREMENTS, Requirement, apply_preset


class JwksSettings(ConfigModel):
    """JWKS cache of one key manager (RFC 7517). All durations in seconds."""

    refresh_interval: PositiveSeconds = 300.0
    """Background refresh period of the key set when the JWKS response has no `Cache-Control: max-age`."""
    kid_refetch_cooldown: PositiveSeconds = 5.0
    """A token with an unknown `kid` forces a refetch at most once per this many seconds (single-flight,
    whatever the number of distinct kids). A check arriving less than `forced_refetch_wait` before the cooldown
    ends waits for that refetch; earlier ones get 401. So while an attacker sends unknown kids, a token signed
    with a newly published key is refused for at most `kid_refetch_cooldown - forced_refetch_wait` seconds (plus
    the key manager's answer time), and never when `kid_refetch_cooldown` plus that answer time is at most
    `forced_refetch_wait` (at the price of one fetch per cooldown under attack;
    [security.md](security.md#key-rotation))."""
    max_stale: PositiveSeconds = 3600.0
    """After refreshes start failing, seconds (past `refresh_interval`) the last good key set is still used;
    then checks answer 503."""
    timeout: PositiveSeconds = 5.0
    """Seconds for one JWKS fetch (and for one discovery fetch)."""
    retry_interval: PositiveSeconds = 5.0
    """Delay before retrying a failed fetch; doubles up to `refresh_interval`."""
    forced_refetch_wait: PositiveSeconds = 0.2
    """How long a check with an unknown `kid` waits for the forced refetch; past it the check is 401 (a token
    problem, never a 503) and the fetch goes on in the background. Keep it below `server.decision_timeout`."""
    min_refresh_interval: PositiveSeconds = 60.0
    """Lower bound of the period taken from `Cache-Control: max-age` (minus `Age`); `no-cache`, `no-store` and
    `max-age=0` give this bound."""
    max_refresh_interval: PositiveSeconds = 3600.0
    """Upper bound of the period taken from `Cache-Control: max-age`. Must not be below `min_refresh_interval`."""

    @model_validator(mode="after")
    def _bounds(self) -> JwksSettings:
        if self.min_refresh_interval > self.max_refresh_interval:
            raise ValueError("jwks.min_refresh_interval must not be above jwks.max_refresh_interval")
        return self


class CertificateFile(ConfigModel):
    """A static verification key: a PEM X.509 certificate or public key file (instead of a JWKS)."""

    path: Annotated[str, Field(min_length=1)]
    """The PEM file (relative paths are relative to the working directory); its first PEM block is used."""
    kid: Annotated[str, Field(min_length=1)] | None = None
    """``kid`` tokens name this key by; None: the key has no kid and is chosen by the token's ``alg``."""

    _public_key: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _loadable(self) -> CertificateFile:
        self._public_key = load_pem_file(self.path)  # raises ValueError with the reason
        return self

    @property
    def public_key(self) -> Any:
        """The checked ``cryptography`` public key, loaded once, when the config was validated."""
        return self._public_key


class KeyManagerSettings(ConfigModel):
    """An external OAuth2 / OIDC key manager (identity provider) whose access tokens authz accepts."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    """Identifier (letters, digits, `.`, `_`, `-`); client IDs are registered per key manager."""
    preset: Literal["keycloak", "auth0", "okta", "entra", "entra-v1", "entra-v2", "asgardeo", "rfc9068"] | None = None
    """`keycloak`, `auth0`, `okta`, `entra` (Entra ID v1.0 + v2.0 tokens), `entra-v1`, `entra-v2`, `asgardeo`:
    defaults for `client_id_claims`, `scope_claims`, `algorithms`, `audience_parameter` (Auth0),
    `token_endpoint_auth_method` (Okta) and (when no key source is given) `discovery: oidc`; `rfc9068` (RFC 9068 JWT access tokens of any server): `typ: [at+jwt]`, `client_id_claims: [client_id]`,
    `scope_claims: [scope]`, and `audiences` must be set. Fields given explicitly win, field by field, unless they
    contradict the preset's profile (`rfc9068` with another `typ`, no `audiences`, `client_id_claims` without
    `client_id` or `scope_claims` without `scope`: refused). See [key-managers/](key-managers/README.md)."""
    issuer: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    """Exact `iss` of its tokens: a string, or a list of strings when one key manager (one key set, one client
    registry) issues tokens under several issuers, e.g. Entra ID v1.0 `https://sts.windows.net/{tenant}/` and
    v2.0 `https://login.microsoftonline.com/{tenant}/v2.0`. Each is compared exactly; one trailing `/` is
    ignored on both sides (`https://idp/` = `https://idp`); nothing else is normalized (no case folding). The
    key manager of a token is chosen by `iss` among every issuer of every key manager, before any network call;
    an issuer may belong to one key manager only. `discovery` reads the metadata of the first issuer."""
    jwks_uri: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """`http(s)://` URL of its JWK Set (RFC 7517)."""
    discovery: Literal["oidc", "oauth"] | None = None
    """`oidc`: take `jwks_uri` from `{issuer}/.well-known/openid-configuration`; `oauth`: from the RFC 8414
    metadata `/.well-known/oauth-authorization-server{issuer path}`. The metadata's `issuer` must equal
    `issuer` (trailing `/` rule), else the key manager is unusable: its tokens get 503 and an error is
    logged, retried in the background."""
    certificates: list[CertificateFile] = []
    """Static keys instead of a JWKS: PEM files (X.509 certificate or public key), each a path or `{path, kid}`
    (`kid` optional). Read and checked by `check-config` and at start."""
    audiences: Annotated[list[Annotated[str, Field(min_length=1)]], Field(validate_default=True)] = []
    """Accepted `aud` values, any-of; the token's `aud` may be a string or a list. Empty: `aud` is not checked
    (not recommended; refused with `preset: rfc9068`)."""
    algorithms: Annotated[list[str], Field(min_length=1)] = ["RS256"]
    """Allow-list of JWS algorithms: `RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA`. `none` and
    HMAC (`HS*`) are refused by the validator."""
    client_id_claims: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = [
        "azp", "client_id",
    ]
    """Ordered claim names holding the OAuth2 client ID; the first present wins. Keycloak `[azp]`, Okta `[cid]`,
    Entra v1 `[appid]`, Auth0/Asgardeo `[azp, client_id]`. A token with none of them is denied (401)."""
    scope_claims: list[Annotated[str, Field(min_length=1)]] = ["scope", "scp"]
    """Ordered claim names holding scopes: a space-separated string or a list. The first present wins (never a
    union)."""
    leeway: Annotated[float, Field(ge=0, le=600)] = 60.0
    """Seconds of clock skew allowed on `exp`, `nbf` and `iat` (0-600)."""
    verify_tls: bool = True
    """Verify the TLS certificate of the JWKS and discovery servers."""
    ca_bundle: str | None = None
    """PEM file of CAs trusted for the JWKS and discovery fetches instead of httpx's default bundle (certifi)."""
    jwks: JwksSettings = JwksSettings()
    """The JWKS cache of this key manager (RFC 7517); all durations in seconds."""
    typ: Annotated[list[Annotated[str, Field(min_length=1)]], Field(validate_default=True)] = []
    """Accepted JWS `typ` header values, e.g. `[at+jwt]` (RFC 9068); case-insensitive, `application/` prefix
    optional. Empty: not checked. Another or a missing `typ` is 401."""
    required_claims: list[Annotated[str, Field(min_length=1)]] = []
    """Claims every token must carry, present and not null (besides `exp` and `iss`, always required). Missing:
    401."""
    max_token_lifetime: PositiveSeconds | None = None
    """Seconds. A token whose `exp` lies further in the future is denied (401) before any key lookup. None: no
    limit."""

    # ---- connection data shown to developers (never used to validate tokens) ----
    token_endpoint: Annotated[str, Field(pattern=r"^https?://[^/?#@]+([/?][^#]*)?$")] | None = None
    """`http(s)://` URL of its token endpoint (RFC 6749 section 3.2), shown to developers with ready-to-run token
    requests (`authz registry app add-client`, `app show`, the admin API's `DescribeApplication`). With
    `discovery` it replaces the metadata's `token_endpoint`; otherwise it is the only source, and without it
    developers are told that the token endpoint is unknown. No user info (credentials) allowed in the URL."""
    grant_types_supported: list[Annotated[str, Field(pattern=r"^[\x21-\x7e]+$")]] = []
    """Grant types of its token endpoint (RFC 8414 `grant_types_supported`), e.g. `[password,
    client_credentials]`, shown to developers. Empty: the metadata's list with `discovery`, else not stated."""
    audience_parameter: Annotated[str, Field(pattern=r"^[A-Za-z0-9._~-]+$")] | None = None
    """Token-request parameter that asks for the audience (the first of `audiences`) in the token requests shown
    to developers: `audience` for Auth0 (its preset sets it), `resource` for RFC 8707 servers. None: the key
    manager puts the audience in its tokens by itself (Keycloak's audience mapper, Okta's authorization server)."""
    token_endpoint_auth_method: Literal["client_secret_post", "client_secret_basic"] | None = None
    """How clients authenticate in the token requests shown to developers (RFC 7591 names): `client_secret_post`
    (`client_id` and `client_secret` form parameters) or `client_secret_basic` (HTTP Basic, Okta's default; its
    preset sets it). None: `client_secret_post`, unless the metadata's `token_endpoint_auth_methods_supported`
    lists only `client_secret_basic`."""
    requested_scope: Annotated[str, Field(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$")] | None = None
    """The `scope` of the token requests shown to developers (both grants), instead of the scopes the application's
    APIs require: Entra ID's `api://orders-api/.default` (the permissions granted to the client: delegated ones in
    `scp` for a user, application ones in `roles` for client credentials). None: the APIs' scopes."""

    @field_validator("issuer", mode="before")
    @classmethod
    def _issuer_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return value
        raise ValueError("must be a string or a list of strings")

    @field_validator("issuer")
    @classmethod
    def _issuers_distinct(cls, value: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        for index, issuer in enumerate(value):
            key = normalize_issuer(issuer)
            if key in seen:
                raise ValueError(f"issuer[{index}] {issuer!r} is already listed as issuer[{seen[key]}] "
                                 "(one trailing '/' is ignored)")
            seen[key] = index
        return value

    @field_validator("audiences", "typ", "client_id_claims", "scope_claims")
    @classmethod
    def _preset_requirements(cls, value: list[str], info: ValidationInfo) -> list[str]:
        preset = info.data.get("preset")
        for requirement in REQUIREMENTS.get(preset, ()) if isinstance(preset, str) else ():
            if requirement.field == info.field_name:
                problem = _contradiction(requirement, value)
                if problem:
                    raise ValueError(f"preset {preset} {problem} ({requirement.why})")
        return value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        bad = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if bad:
            names = ", ".join(repr(alg) for alg in bad)
            raise ValueError(
                f"algorithm{'s' if len(bad) > 1 else ''} {names} not allowed: use asymmetric algorithms only "
                f"({', '.join(ASYMMETRIC_ALGORITHMS)}); 'none' and HMAC are never accepted"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return apply_preset(data) if isinstance(data, dict) else data

    @field_validator("certificates", mode="before")
    @classmethod
    def _certificate_paths(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> KeyManagerSettings:
        given = [name for name, value in (("jwks_uri", self.jwks_uri), ("discovery", self.discovery),
                                          ("certificates", self.certificates)) if value]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of jwks_uri, discovery, certificates"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.discovery and not re.match(r"^https?://[^/?#]+", self.discovery_issuer):
            several = " (the first issuer's metadata is read)" if len(self.issuer) > 1 else ""
            raise ValueError(f"discovery needs an http(s) issuer URL{several}")
        return self

    @property
    def discovery_issuer(self) -> str:
        """The issuer whose metadata ``discovery`` reads: the first one listed."""
        return self.issuer[0]

    @property
    def normalized_issuers(self) -> tuple[str, ...]:
        """Every issuer without one trailing slash, the form used to pick a key manager by ``iss``."""
        return tuple(normalize_issuer(i) for i in self.issuer)

    @property
    def accepted_iss(self) -> tuple[str, ...]:
        """Every ``iss`` value accepted: each issuer with and without one trailing slash."""
        return tuple(form for i in self.normalized_issuers for form in (i, i + "/"))


def _contradiction(requirement: Requirement, value: list[str]) -> str | None:
    """How ``value`` contradicts ``requirement``, or None when it does not."""
    wanted = ", ".join(requirement.values)
    if requirement.kind == "non_empty":
        return None if value else f"needs at least one value in {requirement.field}"
    if requirement.kind == "includes":
        missing = [v for v in requirement.values if v not in value]
        return f"needs {requirement.field} to include {', '.join(missing)}, got {value}" if missing else None
    allowed = {media_type(v) for v in requirement.values}
    if value and all(media_type(v) in allowed for v in value):
        return None
    return f"accepts only {requirement.field} {wanted}, got {value}"



