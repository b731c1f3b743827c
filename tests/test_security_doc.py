"""docs/security.md and docs/operations.md name the tests that pin each threat: every one of them exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

DOCS = ("docs/security.md", "docs/operations.md")
REFERENCE = re.compile(r"(?:tests/)?(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)")


def _tests_of(module: str) -> set[str]:
    tree = ast.parse(Path("tests", module).read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_a_doc_names_exists(doc: str) -> None:
    references = REFERENCE.findall(Path(doc).read_text(encoding="utf-8"))
    missing = [f"{module}::{name}" for module, name in references
               if not Path("tests", module).exists() or name not in _tests_of(module)]
    assert references and missing == []


def test_the_threat_model_maps_every_threat_to_at_least_one_test() -> None:
    text = Path("docs/security.md").read_text(encoding="utf-8")
    table = text[text.index("## Threat model"):text.index("**Fuzzing.**")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| threat")]
    assert len(rows) >= 20
    assert all(REFERENCE.search(row.split(" | ")[-1]) for row in rows), [r[:60] for r in rows if not REFERENCE.search(r)]
