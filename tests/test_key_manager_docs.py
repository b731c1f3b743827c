"""Every key-manager page has a "Get a token" section whose ``curl`` commands are exactly what authz prints
(``authz.keys.token_requests``) for the key manager configured as the page says."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from authz.config import Settings
from authz.dev.keymanager import KeyManager
from authz.keys.connection import ConnectionData
from authz.keys.token_requests import token_requests

PAGES = Path("docs/key-managers")
SCOPES = ["orders:read", "orders:write"]
# Per page: the key manager entry as the page configures it (issuer and key source are not used by the requests).
CONFIGURED: dict[str, dict[str, Any]] = {
    "keycloak": {"preset": "keycloak"},
    "auth0": {"preset": "auth0", "audiences": ["https://orders.example.test"]},
    "okta": {"preset": "okta"},
    "entra-v2": {"preset": "entra-v2", "requested_scope": "api://orders-api/.default"},
    "entra-v1": {"preset": "entra-v1", "requested_scope": "api://orders-api/.default"},
    "asgardeo": {"preset": "asgardeo"},
    "rfc9068": {"audiences": ["https://orders.example.test"], "audience_parameter": "resource"},
}


def _section(page: str) -> str:
    text = (PAGES / f"{page}.md").read_text(encoding="utf-8")
    assert "\n## Get a token\n" in text, f"{page}.md has no 'Get a token' section"
    return text.split("\n## Get a token\n", 1)[1].split("\n## ", 1)[0]


def test_every_key_manager_page_has_a_get_a_token_section() -> None:
    pages = sorted(p.stem for p in PAGES.glob("*.md") if p.name != "README.md")
    assert pages == sorted(CONFIGURED)
    for page in pages:
        section = _section(page)
        assert "grant_type=password" in section and "grant_type=client_credentials" in section, page
        assert "Sources:" in section and "https://" in section.split("Sources:", 1)[1], page


@pytest.mark.parametrize("page", sorted(CONFIGURED))
def test_the_pages_curls_are_what_authz_prints(
    page: str, idp: KeyManager, make_settings: Callable[..., Settings]
) -> None:
    entry = {"name": page, "issuer": "https://idp.example.test", "jwks_uri": "https://idp.example.test/keys",
             **CONFIGURED[page]}
    km = make_settings(key_managers=[entry]).key_managers[0]
    blocks = re.findall(r"```sh\n(curl .*?)\n```", _section(page), flags=re.S)
    assert len(blocks) == 2, page
    for block in blocks:
        url = block.splitlines()[0].split()[-2]
        grant = re.search(r"grant_type=(\w+)", block).group(1)  # type: ignore[union-attr]
        client = re.search(r"client_id=([\w.-]+)|-u '([\w.-]+):", block)
        assert client is not None, block
        connection = ConnectionData(key_manager=page, issuer=km.issuer, token_endpoint=url, jwks_uri=None)
        printed = {r.grant_type: r.curl for r in token_requests(km, connection, client.group(1) or client.group(2),
                                                                SCOPES)}
        assert block == printed[grant], f"{page}.md {grant}"
