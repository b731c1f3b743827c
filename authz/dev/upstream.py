"""Echo upstream: a tiny HTTP server standing in for an API behind Envoy. Development aid, not for production.

Every request on any path and method answers ``200 application/json`` with
``{"method", "path", "headers": {lower-cased name: value}, "body_bytes": n}``, so tests and demos can see
exactly what Envoy forwarded (e.g. the ``x-application-id`` header authz added, or that ``authorization``
was removed).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import signal
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from authz.dev.httpserver import ServedInThread

log = logging.getLogger(__name__)

MAX_RECORDED = 100
MAX_BODY_BYTES = 16 * 1024 * 1024


class EchoUpstream(ServedInThread):
    """HTTP echo server run in a daemon thread.

    Attributes:
        port: bound port, set by :meth:`start`.
        url: ``http://host:port``, set by :meth:`start`.
        received: the last :data:`MAX_RECORDED` (100) echo dicts, oldest first.
    """

    def __init__(self) -> None:
        self._received: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_RECORDED)
        self._lock = threading.Lock()
        super().__init__()

    @property
    def received(self) -> list[dict[str, Any]]:
        """Snapshot list of the last 100 requests (echo dicts), oldest first."""
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._received.clear()

    def _record(self, echo: dict[str, Any]) -> None:
        with self._lock:
            self._received.append(echo)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on ``host:port`` (0 = ephemeral) in a daemon thread; sets ``port`` and ``url``.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound.
        """
        handler = type("_BoundEchoHandler", (_EchoHandler,), {"upstream": self})
        self._serve(handler, host, port, "echo-upstream")
        log.info("echo upstream (development aid) listening on %s", self.url)


class _EchoHandler(BaseHTTPRequestHandler):
    upstream: EchoUpstream
    protocol_version = "HTTP/1.1"
    server_version = "echo-upstream"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - " + format, self.address_string(), *args)

    def _echo(self) -> None:
        length_header = self.headers.get("Content-Length")
        n = 0
        if length_header is not None:
            try:
                n = int(length_header)
            except ValueError:
                n = -1
            if n < 0 or n > MAX_BODY_BYTES:
                self.close_connection = True
                self._reply(400, {"error": "bad Content-Length"})
                return
        body = self.rfile.read(n) if n else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        echo = {"method": self.command, "path": self.path, "headers": headers, "body_bytes": len(body)}
        self.upstream._record(echo)
        self._reply(200, echo)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo  # noqa: N815


def main(argv: list[str] | None = None) -> int:
    """Run the echo upstream standalone until interrupted. Returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m authz.dev.upstream", description="Echo upstream (dev aid).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    upstream = EchoUpstream()
    upstream.start(args.host, args.port)
    stop = threading.Event()
    try:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        upstream.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
