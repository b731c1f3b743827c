"""What every ``authz`` command shares: the default config path, loading it with every error printed, logging
setup, and running a coroutine on uvloop.

Exit statuses of every command: 0 success; 1 invalid input (config error, refusal); 2 usage error (argparse);
3 a dependency unreachable (Redis).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable

from authz.config import ENV_CONFIG, ConfigError, Settings, load_config

DEFAULT_CONFIG = os.environ.get(ENV_CONFIG, "config/authz.yaml")
"""The config file of every command: ``$AUTHZ_CONFIG``, else ``config/authz.yaml`` (relative to the current directory)."""


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
