"""The threaded HTTP server of the dev servers (key manager, echo upstream)."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class DevHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with daemon threads that stays quiet when a client drops its connection.

    A peer resetting the connection (load tests, clients killed mid-request) is normal for a dev server;
    any other error in a handler is still printed with its traceback. :meth:`server_close` also shuts down the
    connections clients keep alive (HTTP/1.1), whose handler threads would otherwise go on answering: a stopped
    server answers nothing.
    """

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        with self._open_lock:
            open_connections, self._open = list(self._open), set()
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its peer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore ``ConnectionResetError`` and ``BrokenPipeError``; report anything else as usual."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class ServedInThread:
    """Base of the dev servers: one :class:`DevHTTPServer` served in a daemon thread.

    Attributes:
        port / url: set by :meth:`_serve`.
    """

    def __init__(self) -> None:
        self.port: int | None = None
        self.url: str | None = None
        self._server: DevHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _serve(self, handler: type[BaseHTTPRequestHandler], host: str, port: int, name: str,
               ssl_context: ssl.SSLContext | None = None) -> None:
        """Bind ``host:port`` (0 = ephemeral), optionally with TLS, and serve ``handler`` in a daemon thread.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError(f"{name} already started")
        self._server = DevHTTPServer((host, port), handler)
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if ssl_context is not None else 'http'}://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call more than once."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()  # type: ignore[attr-defined]  # each server defines start(host, port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
