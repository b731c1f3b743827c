"""Key-manager presets: the token shapes of common identity providers as configuration defaults.

A key manager with ``preset: <name>`` gets the preset's values for every field its YAML entry does not set;
a field given explicitly always wins, field by field (``client_id_claims`` given replaces the preset's list,
it is not merged). Each preset has a page in ``docs/key-managers/<name>.md`` with its YAML and a sample token.

A preset may also state requirements (:data:`REQUIREMENTS`): what its token profile needs of the final
fields, whoever set them. ``authz.config`` refuses an entry that overrides a field into a contradiction
(``preset: rfc9068`` with ``typ: [JWT]``, or without ``audiences``).

This module has no authz imports: ``authz.config`` applies the presets while validating.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

PRESETS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType({
    # Keycloak: the client is 'azp'; scopes are a space-separated 'scope'. Issuer https://host/realms/<realm>.
    "keycloak": MappingProxyType({
        "client_id_claims": ("azp",),
        "scope_claims": ("scope",),
        "algorithms": ("RS256",),
        "discovery": "oidc",
    }),
    # Auth0: 'azp' (user and M2M tokens); 'client_id' with the RFC 9068 token profile. Issuer ends with '/'.
    "auth0": MappingProxyType({
        "client_id_claims": ("azp", "client_id"),
        "scope_claims": ("scope",),
        "algorithms": ("RS256",),
        "discovery": "oidc",
        "audience_parameter": "audience",  # the API identifier is asked for with the 'audience' parameter
    }),
    # Okta (custom authorization servers): 'cid'; scopes are the list 'scp'. Issuer https://<org>/oauth2/<id>.
    "okta": MappingProxyType({
        "client_id_claims": ("cid",),
        "scope_claims": ("scp",),
        "algorithms": ("RS256",),
        "discovery": "oidc",
        "token_endpoint_auth_method": "client_secret_basic",  # Okta's default for an app's client secret
    }),
    # Microsoft Entra ID v1.0 access tokens: 'appid'; delegated scopes in 'scp' (space-separated), application
    # permissions in 'roles' (list). Issuer https://sts.windows.net/<tenant>/.
    "entra-v1": MappingProxyType({
        "client_id_claims": ("appid",),
        "scope_claims": ("scp", "roles"),
        "algorithms": ("RS256",),
        "discovery": "oidc",
    }),
    # Microsoft Entra ID, v1.0 and v2.0 access tokens of one tenant (one key set) in one key manager: the client is
    # 'azp' (v2.0) or 'appid' (v1.0; v1.0 tokens carry no 'azp', v2.0 tokens no 'appid'). List both issuers,
    # v2.0 first (its metadata is the one discovery reads).
    "entra": MappingProxyType({
        "client_id_claims": ("azp", "appid"),
        "scope_claims": ("scp", "roles"),
        "algorithms": ("RS256",),
        "discovery": "oidc",
    }),
    # Microsoft Entra ID v2.0 access tokens: 'azp'; 'scp' or 'roles' as in v1.
    # Issuer https://login.microsoftonline.com/<tenant>/v2.0.
    "entra-v2": MappingProxyType({
        "client_id_claims": ("azp",),
        "scope_claims": ("scp", "roles"),
        "algorithms": ("RS256",),
        "discovery": "oidc",
    }),
    # Asgardeo / WSO2 Identity Server: 'azp' then 'client_id'; 'scope' string.
    # Issuer https://api.asgardeo.io/t/<org>/oauth2/token (WSO2 IS: https://<host>/oauth2/token).
    "asgardeo": MappingProxyType({
        "client_id_claims": ("azp", "client_id"),
        "scope_claims": ("scope",),
        "algorithms": ("RS256",),
        "discovery": "oidc",
    }),
    # RFC 9068 JWT access tokens, whichever server issues them: typ at+jwt, the client in 'client_id', scopes in
    # the space-separated 'scope'; 'aud' is required (see REQUIREMENTS: audiences must be configured). No key
    # source: the entry names one (jwks_uri, discovery or certificates).
    "rfc9068": MappingProxyType({
        "typ": ("at+jwt",),
        "client_id_claims": ("client_id",),
        "scope_claims": ("scope",),
    }),
})
"""Preset name -> field defaults (the names of ``key_managers[]`` fields)."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a preset's token profile needs of one final field of the key manager.

    Attributes:
        field: the ``key_managers[]`` field.
        kind: ``only``: non-empty, every value one of ``values`` (``typ`` values compare as media types);
            ``includes``: ``values`` are all listed; ``non_empty``: at least one value.
        values: the values ``only`` / ``includes`` speak of.
        why: the rule of the profile, for the error message (with its RFC section).
    """

    field: str
    kind: Literal["only", "includes", "non_empty"]
    values: tuple[str, ...]
    why: str


REQUIREMENTS: MappingProxyType[str, tuple[Requirement, ...]] = MappingProxyType({
    "rfc9068": (
        Requirement("typ", "only", ("at+jwt",), "RFC 9068 section 2.1: an access token's typ is at+jwt"),
        Requirement("audiences", "non_empty", (),
                    "RFC 9068 section 4: aud is required and must be checked against the resource's audiences"),
        Requirement("client_id_claims", "includes", ("client_id",),
                    "RFC 9068 section 2.2: the client is the client_id claim"),
        Requirement("scope_claims", "includes", ("scope",),
                    "RFC 9068 section 2.2.3: scopes are the space-separated scope claim"),
    ),
})
"""Preset name -> what its profile needs of the final fields (given or from the preset)."""

SOURCE_FIELDS = ("jwks_uri", "discovery", "certificates")
"""The fields that say where keys come from; a preset's ``discovery`` applies only when none is given."""


def apply_preset(entry: dict[str, Any]) -> dict[str, Any]:
    """Fill a raw ``key_managers[]`` entry with its preset's defaults.

    Args:
        entry: the YAML mapping of one key manager (not modified).
    Returns:
        A new mapping: ``entry`` plus, for each preset field absent from it, the preset value (lists as lists).
        Unchanged when ``preset`` is absent or unknown (validation then reports the unknown name).
    """
    preset = PRESETS.get(entry.get("preset")) if isinstance(entry.get("preset"), str) else None
    if preset is None:
        return entry
    out = dict(entry)
    for field, value in preset.items():
        if field == "discovery" and any(out.get(name) is not None for name in SOURCE_FIELDS):
            continue
        if field not in out:
            out[field] = list(value) if isinstance(value, tuple) else value
    return out
