"""docs/configuration.md is generated from the config model's field descriptions and stays in step with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from authz.config import KeyManagerSettings, Settings
from authz.config.base import ConfigModel
from authz.config.reference import field_rows, render

DOC = Path("docs/configuration.md")


def test_configuration_doc_is_the_generated_reference() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "regenerate: python -m authz.config.reference > docs/configuration.md"


def test_python_m_authz_config_reference_prints_the_page() -> None:
    out = subprocess.run([sys.executable, "-m", "authz.config.reference"], capture_output=True, text=True, check=True)
    assert out.stdout == render()


def test_every_section_and_nested_field_has_a_row_with_its_default() -> None:
    rows = {path: default for path, default, _ in field_rows(KeyManagerSettings)}
    assert rows["issuer"] == "required"
    assert rows["algorithms"] == "`[RS256]`"
    assert rows["jwks"] == "see below"
    assert rows["jwks.kid_refetch_cooldown"] == "`5`"
    assert rows["ca_bundle"] == "none" and rows["verify_tls"] == "`true`"
    assert rows["certificates[]"] == "`[]`" and "certificates[].path" in rows
    page = render()
    for section in Settings.model_fields:
        assert f"## `{section}" in page


def test_a_field_without_a_description_cannot_be_rendered() -> None:
    class Undocumented(ConfigModel):
        documented: int = 1
        """Has a description."""
        bare: int = 2
    with pytest.raises(ValueError, match="Undocumented.bare: no description"):
        field_rows(Undocumented)
