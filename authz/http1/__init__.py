"""A lean HTTP/1.1 server: an ``asyncio.Protocol`` (uvloop when installed) over httptools' request parser.

It serves the HTTP ext_authz front end (:mod:`authz.envoy.http_service`) and the backend-JWT JWKS endpoint
(:mod:`authz.ops.jwks_endpoint`). A :class:`Handler` maps ``(method, target, headers)`` to an :class:`Answer`,
either at once (the warm check: no task, no await) or through a coroutine. The server owns the transport:

- keep-alive (HTTP/1.1 default; ``Connection: close`` honoured) and pipelining: answers go out in request
  order, one request decided at a time per connection, the ones behind it queued (reading pauses past
  :attr:`Limits.max_queued`);
- bounds, each a clear answer and never a crash: request target longer than :attr:`Limits.max_target` -> 400,
  more than :attr:`Limits.max_headers` header fields or :attr:`Limits.max_header_bytes` of them -> 431, a body
  over :attr:`Limits.max_body` -> 413 (the body is read and discarded), malformed HTTP -> 400, a request not
  complete within :attr:`Limits.request_timeout` seconds of its first byte -> 408 (slowloris); every one of
  these closes the connection after the answer. A connection idle for :attr:`Limits.idle_timeout` is closed;
- a ``HEAD`` request is answered without the body (its ``content-length`` kept), as RFC 9110 section 9.3.2 says;
- :meth:`Http1Server.close` stops accepting, lets requests already received finish within the grace period
  (their answers carry ``connection: close``), then aborts whatever is left.

Errors of the handler itself are logged and answered with :meth:`Handler.reject` ``(503, ...)``. Malformed
requests are logged at DEBUG only: anyone who can reach the port could otherwise flood the log.
"""

from authz.http1.server import Http1Server
from authz.http1.wire import Answer, Handler, Limits, RawHeaders

__all__ = ["Answer", "Handler", "Http1Server", "Limits", "RawHeaders"]
