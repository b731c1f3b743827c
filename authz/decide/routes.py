"""Route phase: which API and resource a request is for.

The API comes from the Envoy route's ``context_extensions.api_id`` when set, else from the request's host
and path (the longest configured ``context`` that is a segment-wise prefix of the path). The resource is
the most specific template of that API matching the path below the context and the method.

Paths are canonicalized first (:func:`normalize_path`), so that a path-based decision cannot be
bypassed with dot segments, repeated slashes or percent-encoding (CVE-2019-9901 and kin).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from authz.cache import BoundedCache
from authz.config import ApiSettings, ResourceSettings
from authz.errors import Denial, Reason
from authz.model import Request

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")


def _bad_path(description: str) -> Denial:
    return Denial(Reason.INVALID_REQUEST, description)


def normalize_path(raw: str) -> str:
    """Canonical form of a request's ``:path`` used for matching.

    Drops the query and fragment, decodes percent-encoded unreserved characters (RFC 3986 section 2.3),
    upper-cases the hex of the remaining escapes, merges repeated ``/`` and removes dot segments
    (RFC 3986 section 5.2.4).

    Args:
        raw: ``attributes.request.http.path`` as Envoy sends it (query string included).
    Returns:
        The canonical absolute path, e.g. ``/orders/v1/items``.
    Raises:
        Denial: ``INVALID_REQUEST`` (400) for a path that is not absolute, contains ``\\``, an encoded
            ``/`` or ``\\`` (``%2F``, ``%5C``), a ``;`` path parameter, a control character or a broken escape.
    """
    path = raw.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        raise _bad_path("The request path is not an absolute path")
    if "\\" in path:
        raise _bad_path("The request path contains a backslash")
    if ";" in path:
        raise _bad_path("The request path contains a ';' path parameter")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        raise _bad_path("The request path contains a space or control character")
    if "%" in path:
        if path.count("%") != len(_PCT.findall(path)):
            raise _bad_path("The request path has a malformed percent-encoding")

        def _decode(m: re.Match[str]) -> str:
            ch = chr(int(m.group(1), 16))
            if ch in "/\\":
                raise _bad_path("The request path contains an encoded slash or backslash (%2F or %5C)")
            if ch == ";":
                raise _bad_path("The request path contains a ';' path parameter")
            if ord(ch) < 0x20 or ord(ch) == 0x7F:
                raise _bad_path("The request path contains an encoded control character")
            return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

        path = _PCT.sub(_decode, path)
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        elif seg == "" and not last:
            continue
        else:
            out.append(seg)
    return "/" + "/".join(out)


@dataclass(frozen=True, slots=True)
class Route:
    """The matched API and resource.

    Attributes:
        api: the API's settings.
        resource: the resource's settings.
        path: the canonical request path.
    """

    api: ApiSettings
    resource: ResourceSettings
    path: str


@dataclass(frozen=True, slots=True)
class _CompiledResource:
    settings: ResourceSettings
    segments: tuple[str, ...]
    methods: frozenset[str] | None  # None: any method

    def matches(self, method: str, segments: list[str]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        pattern = self.segments
        if pattern and pattern[-1] == "**":
            head = pattern[:-1]
            if len(segments) < len(head):
                return False
            segments = segments[: len(head)]
            pattern = head
        elif len(segments) != len(pattern):
            return False
        for want, got in zip(pattern, segments, strict=True):
            if want == "*" or want.startswith("{"):
                if not got:
                    return False
            elif want != got:
                return False
        return True


def _host_name(authority: str) -> str:
    """The host of an ``:authority`` without its port, lower-cased (``[::1]:8080`` -> ``[::1]``)."""
    host = authority.lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0]


def _split(path: str) -> list[str]:
    return [] if path in ("", "/") else path.split("/")[1:]


def _specificity(resource: _CompiledResource) -> tuple[int, int, int]:
    literal = sum(1 for s in resource.segments if s not in ("*", "**") and not s.startswith("{"))
    greedy = 1 if resource.segments and resource.segments[-1] == "**" else 0
    return (-literal, greedy, -len(resource.segments))


@dataclass(frozen=True, slots=True)
class _CompiledApi:
    settings: ApiSettings
    context: tuple[str, ...]
    hosts: frozenset[str]
    resources: tuple[_CompiledResource, ...]


class RouteTable:
    """Precomputed matcher over the configured APIs.

    Args:
        apis: the configured APIs (``apis``).
        cache_size: most (path, method, host, ``api_id``) resolutions kept (``server.route_cache_size``).
    """

    def __init__(self, apis: Sequence[ApiSettings], cache_size: int = 10_000) -> None:
        compiled = []
        for api in apis:
            resources = [
                _CompiledResource(
                    settings=r,
                    segments=tuple(_split(r.path)),
                    methods=None if "*" in r.methods else frozenset(r.methods),
                )
                for r in api.resources
            ]
            resources.sort(key=_specificity)
            compiled.append(
                _CompiledApi(
                    settings=api,
                    context=tuple(_split(api.context)),
                    hosts=frozenset(api.hosts),
                    resources=tuple(resources),
                )
            )
        self._by_id = {a.settings.id: a for a in compiled}
        # Longest context first, so /orders/v1 wins over /orders; at equal length an API bound to hosts comes
        # before one serving any host, so the more specific API wins whatever the order of the config.
        self._by_prefix = sorted(compiled, key=lambda a: (-len(a.context), 0 if a.hosts else 1))
        self._cache: BoundedCache[tuple[str, str, str, str | None], Route] = BoundedCache("routes", cache_size)

    def cached(self, request: Request) -> Route | None:
        """The route of an earlier identical request (path, method, host, ``api_id``), or None."""
        return self._cache.get((request.path, request.method, request.host, request.context_extensions.get("api_id")))

    def resolve(self, request: Request) -> Route:
        """Find the API and resource of ``request``, from a bounded cache of earlier resolutions.

        A route depends only on (path, method, host, ``api_id``), so a repeated request skips path
        canonicalization and matching; only successful resolutions are cached.

        Args:
            request: the adapted request (``path``, ``method``, ``host``, ``context_extensions``).
        Returns:
            The :class:`Route`.
        Raises:
            Denial: ``INVALID_REQUEST`` for a malformed path; ``NO_MATCHING_RESOURCE`` when the route names
                an unknown API, or no API or resource matches.
        """
        key = (request.path, request.method, request.host, request.context_extensions.get("api_id"))
        route = self._cache.get(key)
        if route is None:
            route = self._resolve(request)
            self._cache.put(key, route)
        return route

    def _resolve(self, request: Request) -> Route:
        path = normalize_path(request.path)
        segments = _split(path)
        api_id = request.context_extensions.get("api_id")
        if api_id is not None:
            api = self._by_id.get(api_id)
            if api is None:
                raise Denial(
                    Reason.NO_MATCHING_RESOURCE, "The route names an API that is not configured",
                    log_detail=f"context_extensions.api_id={api_id[:128]!r} is unknown",
                )
            n = len(api.context)
            rel = segments[n:] if tuple(segments[:n]) == api.context else segments
        else:
            host = _host_name(request.host)
            for api in self._by_prefix:
                n = len(api.context)
                if tuple(segments[:n]) == api.context and (not api.hosts or host in api.hosts):
                    rel = segments[n:]
                    break
            else:
                raise Denial(Reason.NO_MATCHING_RESOURCE, "No API matches the request path")
        if rel and rel[-1] == "":
            rel = rel[:-1]  # one trailing slash names the same resource
        method = request.method.upper()
        for resource in api.resources:
            if resource.matches(method, rel):
                return Route(api=api.settings, resource=resource.settings, path=path)
        raise Denial(
            Reason.NO_MATCHING_RESOURCE, f"No resource of API '{api.settings.id}' matches {method} {path[:256]}"
        )
