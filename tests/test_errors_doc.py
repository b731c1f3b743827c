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


def _cells(code: int) -> list[str]:
    row = next(r for r in error_table_markdown().splitlines()[2:] if r.startswith(f"| {code} |"))
    return [cell.strip() for cell in row.split("|")[1:-1]]


def test_each_row_renders_its_reasons_statuses_error_and_challenge() -> None:
    assert _cells(900902) == ["900902", "`MISSING_CREDENTIALS`", "401", "16 UNAUTHENTICATED", "-",
                              "`Bearer realm` (no `error`)", "Missing credentials"]
    assert _cells(900910) == ["900910", "`INSUFFICIENT_SCOPE`", "403", "7 PERMISSION_DENIED", "`insufficient_scope`",
                              '`Bearer realm, error="insufficient_scope", scope="..."`', "Insufficient scope"]
    assert _cells(900950) == ["900950", "`TEMPORARILY_UNAVAILABLE`", "503", "7 PERMISSION_DENIED",
                              "`temporarily_unavailable`", "no", "Service temporarily unavailable"]
    for reason in Reason:
        cells = _cells(reason.info.code)
        assert cells[1] == f"`{reason.name}`" and cells[2] == str(reason.info.http_status)
        assert cells[6] == reason.info.message


def test_no_two_reasons_share_a_code() -> None:
    codes = [r.info.code for r in Reason]
    assert len(set(codes)) == len(codes) == len(Reason)


def test_every_reason_uses_grpc_7_or_16_by_http_status() -> None:
    for reason in Reason:
        info = reason.info
        expected = GRPC_UNAUTHENTICATED if info.http_status in (400, 401) else GRPC_PERMISSION_DENIED
        assert info.grpc_status == expected, reason.name
