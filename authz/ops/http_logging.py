"""Logging policy of authz's aiohttp servers (the backend-JWT JWKS endpoint, the HTTP ext_authz service).

aiohttp logs a malformed request from a client (a request line or header too long, bad HTTP) at ERROR with
a traceback on the ``aiohttp.server`` logger. Anyone who can reach the port could flood the log that way,
so such records are dropped; errors of authz's own handlers are still logged.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError


class _DropClientErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


_FILTER = _DropClientErrors()


def quiet_client_errors() -> None:
    """Install the filter on ``aiohttp.server`` (idempotent)."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
