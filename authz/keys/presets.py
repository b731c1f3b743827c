"""Key-manager presets: the token shapes of common identity providers as configuration defaults.

A key manager with ``preset: <name>`` gets the preset's values for every field its YAML entry does not set;
a field given explicitly always wins, field by field (``client_id_claims`` given replaces the preset's list,
it is not merged). Each preset has a page in ``docs/key-managers/<name>.md`` with its YAML and a sample token.

This module has no authz imports: ``authz.config`` applies the presets while validating.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

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
})
"""Preset name -> field defaults (the names of ``key_managers[]`` fields)."""

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
