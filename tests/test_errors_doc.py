"""docs/errors.md stays in step with the error table in authz/errors.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from authz.errors import GRPC_PERMISSION_DENIED, GRPC_UNAUTHENTICATED, Reason, error_table_markdown

DOC = Path("docs/errors.md")
BEGIN = "<!-- BEGIN GENERATED: python -m authz.errors -->\n"
END = "<!-- END GENERATED -->"


def generated_block() -> str:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def test_errors_doc_generated_block_equals_the_error_table() -> None:
    assert generated_block() == error_table_markdown()


def test_python_m_authz_errors_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "authz.errors"], capture_output=True, text=True, check=True)
    assert out.stdout == error_table_markdown()


def test_error_table_has_one_row_per_reason_in_code_order() -> None:
    rows = error_table_markdown().splitlines()[2:]
    codes = [int(row.split("|")[1]) for row in rows]
    assert codes == sorted(r.info.code for r in Reason)
    assert len(set(codes)) == len(codes)


def test_every_reason_uses_grpc_7_or_16_by_http_status() -> None:
    for reason in Reason:
        info = reason.info
        expected = GRPC_UNAUTHENTICATED if info.http_status in (400, 401) else GRPC_PERMISSION_DENIED
        assert info.grpc_status == expected, reason.name
