"""Starting the small aiohttp servers of authz (the backend-JWT JWKS endpoint, the metrics endpoint)."""

from __future__ import annotations

from aiohttp import web

from authz.ops.http_logging import quiet_client_errors


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (no access log, no signal handling, client errors not logged).

    Args:
        app: the application.
        host: the address to bind (no brackets around an IPv6 literal).
        port: the port; 0 picks a free one.
    Returns:
        The runner (``await runner.cleanup()`` stops it) and the bound port.
    Raises:
        OSError: the address cannot be bound.
    """
    quiet_client_errors()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
    sockets = getattr(server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1] if sockets else port
