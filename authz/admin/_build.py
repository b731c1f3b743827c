"""Compile ``protos/authz/admin/v1/*.proto`` into ``authz/admin/v1/`` with grpcio-tools (build step).

``python -m authz.admin._build`` (``make protos``, also run by the install step of the Makefile) writes
``admin_pb2.py``, ``admin_pb2.pyi`` and ``admin_pb2_grpc.py``. The generated files are never edited by hand;
``tests/test_admin_api.py`` regenerates them into a temporary directory and fails when they differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "authz" / "admin" / "v1"
GENERATED = ("admin_pb2.py", "admin_pb2.pyi", "admin_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc (grpcio-tools) over every ``.proto`` of the admin API.

    Args:
        out_root: directory that receives ``authz/admin/v1/*_pb2*.py`` (the repository root for a build).
    Returns:
        The generated files.
    Raises:
        RuntimeError: grpcio-tools missing or protoc failing (its exit status in the message).
    """
    try:
        from grpc_tools import protoc  # noqa: PLC0415
    except ImportError:
        raise RuntimeError("grpcio-tools is not installed: pip install -e '.[dev]'") from None
    import grpc_tools  # noqa: PLC0415

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_DIR.glob("*.proto"))
    out_root.mkdir(parents=True, exist_ok=True)
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ])
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status} for {', '.join(protos)}")
    target = out_root / "authz" / "admin" / "v1"
    return [target / name for name in GENERATED]


def main(argv: list[str] | None = None) -> int:
    """Generate into ``--out`` (default: the repository root). Returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m authz.admin._build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    try:
        for path in generate(args.out):
            print(f"wrote {path}")
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
