"""Config reload in a running process: on SIGHUP, and on a change of the file with ``server.watch_config``.

A reload reads and validates the whole file first. An invalid file changes nothing: every error is logged with
its YAML path and the running config stays. A valid one is handed to ``apply``, which builds what depends on it
and swaps it in between two checks (:meth:`authz.ops.services.Services.reconfigure`, then the front ends'
``reconfigure``): checks in flight finish on the config they started with. Settings that need a restart
(:data:`RESTART_ONLY`: the listen addresses, ``workers``, the Redis connection, the admin API, the log format) keep
their running values and are named in the log; the rest applies.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from authz.config import ConfigError, Settings, load_servable

log = logging.getLogger("authz.reload")

RESTART_ONLY: tuple[str, ...] = (
    "server.listen", "server.http_listen", "server.workers", "server.metrics_listen",
    "server.max_receive_message_bytes", "redis", "admin", "logging.format", "backend_jwt.jwks_listen",
)
"""The settings a reload does not change, as YAML paths (a section name stands for all of it): the sockets
already bound, the worker processes, the Redis connection and its caches (the remembered revocations live
there), the admin API and the log handler."""

WATCH_INTERVAL = 1.0
"""Seconds between two looks at the config file under ``server.watch_config`` (a change is reloaded once it has
settled for one interval)."""


def fingerprint(path: str | Path) -> bytes | None:
    """SHA-256 of the file's bytes (what a change is detected by, whatever its mtime); None when unreadable."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).digest()
    except OSError:
        return None


def _get(settings: Settings, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        if value is None:
            return None
        value = getattr(value, part)
    return value


def _replace(settings: Any, parts: list[str], value: Any) -> Any:
    if settings is None:
        return None
    if len(parts) == 1:
        return settings.model_copy(update={parts[0]: value})
    return settings.model_copy(update={parts[0]: _replace(getattr(settings, parts[0]), parts[1:], value)})


def keep_restart_only(running: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """``new`` with every :data:`RESTART_ONLY` setting put back to its running value.

    Args:
        running: the settings in effect.
        new: the validated settings of the file.
    Returns:
        ``(settings to apply, the RESTART_ONLY paths whose value differs in the file)``.
    """
    changed = []
    for path in RESTART_ONLY:
        if _get(running, path) != _get(new, path):
            changed.append(path)
            new = _replace(new, path.split("."), _get(running, path))
    return new, changed


class ConfigReloader:
    """Reloads the config file into a running process, one reload at a time.

    Args:
        path: the config file.
        settings: the settings the process runs with (loaded from ``path``).
        apply: builds what depends on the new settings and swaps it in; may raise (the reload is then
            rejected and the running config kept).
        loaded: :func:`fingerprint` of the file as ``settings`` were read from it (default: the file now).

    Attributes:
        settings: the settings in effect.
        counts: reloads by result, ``applied`` / ``rejected`` (an unchanged file is neither), read by the metrics.
    """

    def __init__(self, path: str | Path, settings: Settings, apply: Callable[[Settings], Awaitable[None]],
                 loaded: bytes | None = None) -> None:
        self.path = Path(path)
        self.settings = settings
        self._apply = apply
        self._loaded = loaded if loaded is not None else fingerprint(path)
        self._lock = asyncio.Lock()
        self.counts = {"applied": 0, "rejected": 0}

    def changed(self) -> bool:
        """Whether the file's content differs from the one last read (an unreadable file counts as unchanged)."""
        now = fingerprint(self.path)
        return now is not None and now != self._loaded

    async def reload(self, trigger: str) -> bool:
        """Read, validate and apply the file.

        Args:
            trigger: what asked for it, for the log (``SIGHUP``, ``file change``).
        Returns:
            True when the new settings are in effect; False when the file was invalid or could not be applied
            (the reasons are logged at ERROR, one line per problem with its YAML path).
        """
        async with self._lock:
            self._loaded = fingerprint(self.path)
            try:
                new = load_servable(self.path)
            except ConfigError as exc:
                for line in exc.errors:
                    log.error("config reload (%s) rejected, %s: %s", trigger, self.path, line)
                log.error("config reload (%s): %d error(s); still running the previous config", trigger,
                          len(exc.errors))
                self.counts["rejected"] += 1
                return False
            except Exception as exc:  # noqa: BLE001 - a reader bug must not end the file watch (the task would die)
                log.exception("config reload (%s) rejected, %s: cannot load it (%s); still running the previous "
                              "config", trigger, self.path, type(exc).__name__)
                self.counts["rejected"] += 1
                return False
            effective, restart = keep_restart_only(self.settings, new)
            for path in restart:
                log.warning("config reload (%s): %s changed in %s but needs a restart; keeping %r", trigger, path,
                            self.path, _get(self.settings, path))
            try:
                await self._apply(effective)
            except Exception as exc:  # noqa: BLE001 - whatever failed, the running config stays in effect
                log.error("config reload (%s) rejected: %s; still running the previous config", trigger,
                          str(exc) or type(exc).__name__)
                self.counts["rejected"] += 1
                return False
            self.settings = effective
            self.counts["applied"] += 1
            log.info("config reloaded (%s) from %s", trigger, self.path)
            return True

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Reload whenever the file's content changes while ``server.watch_config`` is true; runs until cancelled.

        A changed content is reloaded once two looks in a row saw it (it settled for ``interval``): a file still
        being written in place, in several writes, is not read half-written (a truncated YAML file is often
        valid YAML: its last APIs, resources or scopes would be missing).

        Args:
            interval: seconds between two looks at the file.
        """
        seen: bytes | None = None
        while True:
            await asyncio.sleep(interval)
            now = fingerprint(self.path) if self.settings.server.watch_config else None
            if now is None or now == self._loaded or now != seen:
                seen = now
                continue
            seen = None
            await self.reload("file change")
