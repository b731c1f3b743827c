"""The threaded HTTP server of the dev servers (key manager, echo upstream)."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class DevHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with daemon threads that stays quiet when a client drops its connection.

    A peer resetting the connection (load tests, clients killed mid-request) is normal for a dev server;
    any other error in a handler is still printed with its traceback.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore ``ConnectionResetError`` and ``BrokenPipeError``; report anything else as usual."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)
