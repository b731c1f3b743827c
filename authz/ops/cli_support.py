"""What every ``authz`` command shares: the default config path, loading it with every error printed, logging
setup, and running a coroutine on uvloop.

Exit statuses of every command: 0 success; 1 invalid input (config error, refusal); 2 usage error (argparse);
3 a dependency unreachable (Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from authz.config import ENV_CONFIG, ConfigError, Settings, load_config
from authz.ops.logs import setup_logging

DEFAULT_CONFIG = os.environ.get(ENV_CONFIG, "config/authz.yaml")
"""The config file of every command: ``$AUTHZ_CONFIG``, else ``config/authz.yaml`` (relative to the current directory)."""

__all__ = ["DEFAULT_CONFIG", "load", "run", "run_registry", "setup_logging"]


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


def run_registry(args: argparse.Namespace, action: Callable[[Any], Awaitable[str]]) -> int:
    """Run ``print(await action(RegistryAdmin))`` on the registry of ``args.config``; the exit status.

    Refusals (:class:`RegistryError`) and corrupt records print ``error: ...`` and exit 1; an unreachable
    Redis exits 3.
    """
    from authz.keys.fetch import redact_url  # noqa: PLC0415
    from authz.registry.admin import RegistryAdmin  # noqa: PLC0415
    from authz.registry.redis_store import RedisStore  # noqa: PLC0415
    from authz.registry.store import CorruptRecord, RegistryError, StoreUnavailable  # noqa: PLC0415

    settings = load(args.config)

    async def main() -> int:
        store = RedisStore.open(settings.redis.url, settings.redis.key_prefix, max(settings.redis.socket_timeout, 2.0))
        try:
            admin = RegistryAdmin(store, settings)
            await admin.ensure_schema()
            print(await action(admin))
            return 0
        except RegistryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except CorruptRecord as exc:
            print(f"error: the registry holds a corrupt record: {exc}", file=sys.stderr)
            return 1
        except StoreUnavailable as exc:
            print(f"error: Redis at {redact_url(settings.redis.url)} is unreachable: {exc.detail}", file=sys.stderr)
            return 3
        finally:
            await store.aclose()

    return asyncio.run(main())
