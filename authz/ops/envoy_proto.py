"""Shared pieces of ``authz envoy-config``: the Envoy names, addresses, durations and ``Any`` packing.

The generator builds Envoy's v3 API messages with envoy-data-plane's typed betterproto dataclasses (off the hot
path; the Check path uses xds-protos). A typed config (``typed_config``, ``typed_per_filter_config``,
``typed_extension_protocol_options``) is a ``google.protobuf.Any`` made by :func:`pack`: the message's binary
encoding plus its type URL, which envoy-data-plane registers when the message's module is imported, so
proto3 JSON output writes it back as ``{"@type": ..., <fields>}``.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import betterproto2
from envoy_data_plane.envoy.config.core.v3 import Address, SocketAddress
from envoy_data_plane.google.protobuf import Any as AnyMessage

from authz.config.base import check_listen

EXT_AUTHZ = "envoy.filters.http.ext_authz"
"""The ext_authz HTTP filter's name: the key of its per-route config and the namespace of authz's dynamic
metadata (Envoy files ``CheckResponse.dynamic_metadata`` under the filter's name)."""
HEADER_MUTATION = "envoy.filters.http.header_mutation"
LOCAL_RATELIMIT = "envoy.filters.http.local_ratelimit"
ROUTER = "envoy.filters.http.router"
METADATA_NAMESPACE = EXT_AUTHZ
AUTHZ_CLUSTER = "authz"
"""The cluster of authz's gRPC servers (gRPC mode)."""
AUTHZ_HTTP_CLUSTER = "authz_http"
"""The cluster of authz's HTTP ext_authz listeners (HTTP mode)."""


@dataclass(frozen=True)
class HostPort:
    """A ``host:port`` (host name, IPv4 address or IPv6 address without brackets)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """Parse ``host:port`` or ``[v6]:port``.

        Raises:
            ValueError: not a host name or IP address with a port 1-65535 (the reason in the message).
        """
        check_listen(text)
        host, _, port = text.rpartition(":")
        return cls(host.strip("[]"), int(port))

    @property
    def is_ip(self) -> bool:
        """Whether the host is an IP address (a STATIC endpoint) rather than a name (resolved by DNS)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def pack(message: betterproto2.Message) -> AnyMessage:
    """``google.protobuf.Any`` holding ``message`` (type URL ``type.googleapis.com/<full name>``)."""
    return AnyMessage.pack(message)


def seconds(value: float) -> timedelta:
    """A ``google.protobuf.Duration`` value (betterproto maps it to ``timedelta``) of ``value`` seconds.

    Raises:
        ValueError: negative or not finite.
    """
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"duration must be a non-negative number of seconds, got {value!r}")
    return timedelta(seconds=value)


def address(where: HostPort) -> Address:
    """``envoy.config.core.v3.Address`` of a TCP socket."""
    return Address(socket_address=SocketAddress(address=where.host, port_value=where.port))


def _proto_field_name(name: str) -> str:
    return name


def to_dict(message: betterproto2.Message) -> dict[str, Any]:
    """Proto3 JSON of ``message`` with the proto field names (snake_case), as Envoy's YAML configs are written.

    Fields at their default value (``false``, ``0``, ``""``, empty lists) are left out, as proto3 JSON does;
    message fields that are set are written even when empty (``grpc_health_check: {}``); 64-bit integers are
    strings, durations ``"0.250s"``.

    betterproto2's own casings rename a field whose name has a digit followed by letters (``consecutive_5xx``
    becomes ``consecutive_5_xx`` with ``Casing.SNAKE`` and ``consecutive5Xx`` with ``Casing.CAMEL``), which Envoy
    rejects as an unknown field; envoy-data-plane's attribute names are the proto field names, so they are
    written as they are.
    """
    return message.to_dict(casing=_proto_field_name)  # type: ignore[arg-type]
