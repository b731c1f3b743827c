"""What every ``authz`` command shares: the default config path, loading it with every error printed, logging
setup, and running a coroutine on uvloop.

Exit statuses of every command: 0 success; 1 invalid input (config error, refusal); 2 usage error (argparse);
3 a dependency unreachable (Redis).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable

from authz.config import ConfigError, Settings, load_config
from authz.ops.logs import setup_logging

DEFAULT_CONFIG = os.environ.get("AUTHZ_CONFIG", "config/authz.yaml")

__all__ = ["DEFAULT_CONFIG", "load", "run", "setup_logging"]


def load(path: str) -> Settings:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: invalid configuration:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line.removeprefix(f'{path}: ')}", file=sys.stderr)
        raise SystemExit(1) from None


def run(coro: Awaitable[int]) -> int:
    try:
        import uvloop  # noqa: PLC0415

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
