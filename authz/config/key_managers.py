"""The ``key_managers[]`` section: the external OAuth2 / OIDC identity providers whose tokens authz accepts."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from authz.config.base import ASYMMETRIC_ALGORITHMS, ConfigModel, PositiveSeconds, normalize_issuer
from authz.keys.pem import load_pem_file
from authz.keys.presets import apply_preset


class JwksSettings(ConfigModel):
    """JWKS cache of one key manager (RFC 7517). All durations in seconds."""

    refresh_interval: PositiveSeconds = 300.0
    """Background refresh period of the key set."""
    kid_refetch_cooldown: PositiveSeconds = 30.0
    """Minimum time between two forced refetches caused by an unknown ``kid`` (single-flight)."""
    max_stale: PositiveSeconds = 3600.0
    """How long the last good key set keeps being used after refreshes start failing; then 503."""
    timeout: PositiveSeconds = 5.0
    """Timeout of one JWKS HTTP fetch."""
    retry_interval: PositiveSeconds = 5.0
    """Delay before retrying a failed background fetch (doubles up to ``refresh_interval``)."""
    forced_refetch_wait: PositiveSeconds = 0.2
    """How long a check with an unknown ``kid`` waits for the forced refetch before answering 401
    (the fetch itself goes on); keep it below ``server.decision_timeout``."""
    min_refresh_interval: PositiveSeconds = 60.0
    """Lower bound applied to a JWKS response's ``Cache-Control: max-age`` (also used for ``no-cache``,
    ``no-store`` and ``max-age=0``)."""
    max_refresh_interval: PositiveSeconds = 3600.0
    """Upper bound applied to a JWKS response's ``Cache-Control: max-age``."""

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
    preset: Literal["keycloak", "auth0", "okta", "entra-v1", "entra-v2", "asgardeo"] | None = None
    """Defaults for the token shape of a known identity provider (``authz.keys.presets``); explicit fields win."""
    issuer: Annotated[str, Field(min_length=1)]
    """Exact ``iss`` of its tokens (one trailing ``/`` is ignored on both sides)."""
    jwks_uri: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """URL of the JWK Set. Exactly one of ``jwks_uri``, ``discovery`` and ``certificates`` is set."""
    discovery: Literal["oidc", "oauth"] | None = None
    """Find ``jwks_uri`` in the issuer's metadata: ``oidc`` = ``{issuer}/.well-known/openid-configuration``
    (OpenID Connect Discovery 1.0), ``oauth`` = RFC 8414 ``/.well-known/oauth-authorization-server``."""
    certificates: list[CertificateFile] = []
    """Static PEM certificates or public keys used instead of a JWKS."""
    audiences: list[Annotated[str, Field(min_length=1)]] = []
    """Accepted ``aud`` values (any-of). Empty: ``aud`` is not checked."""
    algorithms: Annotated[list[str], Field(min_length=1)] = ["RS256"]
    client_id_claims: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = [
        "azp", "client_id",
    ]
    scope_claims: list[Annotated[str, Field(min_length=1)]] = ["scope", "scp"]
    leeway: Annotated[float, Field(ge=0, le=600)] = 60.0
    """Clock-skew allowance in seconds on ``exp``, ``nbf`` and ``iat``."""
    verify_tls: bool = True
    ca_bundle: str | None = None
    """PEM file of CA certificates trusted for the JWKS fetch (default: the system store)."""
    jwks: JwksSettings = JwksSettings()
    typ: list[Annotated[str, Field(min_length=1)]] = []
    """Accepted JWS ``typ`` header values (RFC 9068 ``at+jwt``); compared case-insensitively with an optional
    ``application/`` prefix (RFC 7515 section 4.1.9). Empty: ``typ`` is not checked."""
    required_claims: list[Annotated[str, Field(min_length=1)]] = []
    """Claims every token must carry (present and not null), besides ``exp`` and ``iss``."""
    max_token_lifetime: PositiveSeconds | None = None
    """Seconds: a token whose ``exp`` lies further than this in the future is denied (401). None: no limit."""

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
        if self.discovery and not re.match(r"^https?://[^/?#]+", self.issuer):
            raise ValueError("discovery needs an http(s) issuer URL")
        return self

    @property
    def normalized_issuer(self) -> str:
        """The issuer without one trailing slash, the form used to pick a key manager by ``iss``."""
        return normalize_issuer(self.issuer)


