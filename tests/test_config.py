"""Configuration: ``load_config`` / ``parse_config`` and the ``authz check-config FILE`` command."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import ConfigError, load_config, parse_config
from tests.support.cli import run_cli

SHIPPED = Path("config/authz.yaml")


def shipped() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def errors_of(doc: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, env)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def check_config(path: Path | str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("check-config", str(path), env=env)


def write(tmp_path: Path, doc: Any, name: str = "authz.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


# ---- parse_config / load_config ------------------------------------------------------------------------


def test_shipped_config_parses_with_its_apis_and_key_manager() -> None:
    settings = load_config(SHIPPED, env={})
    assert [km.name for km in settings.key_managers] == ["demo"]
    assert [api.id for api in settings.apis] == ["orders-v1", "payments-v1"]
    assert settings.server.listen == "127.0.0.1:9191"
    assert settings.redis.url == "redis://127.0.0.1:6380/0"
    assert settings.headers.remove == ["authorization"]


def test_missing_issuer_is_reported_with_its_yaml_path() -> None:
    doc = shipped()
    del doc["key_managers"][0]["issuer"]
    assert errors_of(doc) == ["key_managers[0].issuer: field required"]


def test_unknown_fields_are_reported_at_every_level() -> None:
    doc = shipped()
    doc["colour"] = "blue"
    doc["key_managers"][0]["jwks_url"] = "http://x"
    doc["apis"][1]["resources"][0]["scope"] = ["x"]
    assert sorted(errors_of(doc)) == [
        "apis[1].resources[0].scope: unknown field",
        "colour: unknown field",
        "key_managers[0].jwks_url: unknown field",
    ]


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["RS256", "None"], ["HS512"], ["rs256"]])
def test_hmac_none_and_unknown_algorithms_are_refused(algorithms: list[str]) -> None:
    doc = shipped()
    doc["key_managers"][0]["algorithms"] = algorithms
    [line] = errors_of(doc)
    assert line.startswith("key_managers[0].algorithms: algorithm")
    assert "not allowed" in line and "'none' and HMAC are never accepted" in line
    for alg in algorithms:
        if alg != "RS256":
            assert repr(alg) in line


def test_every_refused_algorithm_is_named_in_one_line() -> None:
    doc = shipped()
    doc["key_managers"][0]["algorithms"] = ["HS256", "RS256", "none"]
    [line] = errors_of(doc)
    assert line.startswith("key_managers[0].algorithms: algorithms 'HS256', 'none' not allowed")


def test_duplicate_api_ids_are_refused() -> None:
    doc = shipped()
    doc["apis"].append(copy.deepcopy(doc["apis"][0]))
    doc["apis"][2]["context"] = "/orders/v2"
    assert errors_of(doc) == ["apis[2].id: 'orders-v1' is already used by apis[0]"]


def test_duplicate_key_manager_names_and_issuers_are_refused() -> None:
    doc = shipped()
    km = doc["key_managers"][0]
    doc["key_managers"].append({**km, "issuer": "https://other.example"})
    doc["key_managers"].append({**km, "name": "second", "issuer": km["issuer"] + "/"})
    assert errors_of(doc) == [
        "key_managers[1].name: 'demo' is already used by key_managers[0]",
        "key_managers[2].issuer: 'http://127.0.0.1:8081' is already used by key_managers[0]",
    ]


def test_duplicates_are_reported_together_with_field_errors() -> None:
    doc = shipped()
    doc["apis"].append(copy.deepcopy(doc["apis"][1]))
    doc["server"]["listen"] = "nohost"
    assert errors_of(doc) == [
        "server.listen: 'nohost' is not host:port (a host name, IPv4 address or [IPv6] address, and a port 1-65535)",
        "apis[2].id: 'payments-v1' is already used by apis[1]",
    ]


@pytest.mark.parametrize(
    "listen", ["nohost", ":9191", "h:0", "h:65536", "h:+1", "h: 1", "h:\u00b2", "h:\u0663", "a b:80", "::1:80"]
)
def test_bad_listen_addresses_are_refused(listen: str) -> None:
    doc = shipped()
    doc["server"]["listen"] = listen
    assert errors_of(doc) == [
        f"server.listen: {listen!r} is not host:port "
        "(a host name, IPv4 address or [IPv6] address, and a port 1-65535)"
    ]


@pytest.mark.parametrize("listen", ["0.0.0.0:9191", "[::]:9191", "[::1]:1", "localhost:65535", "authz.svc:80"])
def test_good_listen_addresses_are_accepted(listen: str) -> None:
    doc = shipped()
    doc["server"]["listen"] = listen
    assert parse_config(doc).server.listen == listen


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("items", "must start with '/'"),
        ("/a/**/b", "'**' is allowed as the last segment only"),
        ("/**/**", "'**' is allowed as the last segment only"),
        ("/items/{bad-name}", "invalid path segment '{bad-name}'"),
        ("/items//x", "invalid path segment ''"),
        ("/items/", "invalid path segment ''"),
        ("/../admin", "invalid path segment '..': dot segments are not allowed"),
        ("/./items", "invalid path segment '.': dot segments are not allowed"),
        ("/it%2Fems", "invalid path segment 'it%2Fems'"),
        ("/items;v=1", "invalid path segment 'items;v=1'"),
        ("/items?x=1", "invalid path segment 'items?x=1'"),
        ("/a**", "invalid path segment 'a**'"),
    ],
)
def test_bad_resource_path_templates_are_refused(path: str, reason: str) -> None:
    doc = shipped()
    doc["apis"][0]["resources"][0]["path"] = path
    [line] = errors_of(doc)
    assert line.startswith(f"apis[0].resources[0].path: {reason}")


@pytest.mark.parametrize("context", ["orders", "/orders/", "/orders//v1", "/orders/../v1", "/orders/%2e", "/o/{id}"])
def test_bad_api_contexts_are_refused(context: str) -> None:
    doc = shipped()
    doc["apis"][0]["context"] = context
    [line] = errors_of(doc)
    assert line.startswith("apis[0].context: ")


def test_unknown_http_method_is_refused_and_methods_are_upper_cased() -> None:
    doc = shipped()
    doc["apis"][0]["resources"][0]["methods"] = ["FETCH"]
    assert errors_of(doc) == ["apis[0].resources[0].methods: unknown HTTP method 'FETCH'"]
    doc["apis"][0]["resources"][0]["methods"] = ["get", "Head"]
    assert parse_config(doc).apis[0].resources[0].methods == ["GET", "HEAD"]


def test_header_names_must_be_lower_case() -> None:
    doc = shipped()
    doc["headers"]["client_id"] = "X-Client-Id"
    doc["headers"]["remove"] = ["Authorization"]
    assert errors_of(doc) == [
        "headers.client_id: 'X-Client-Id' is not a lower-case HTTP header name",
        "headers.remove: 'Authorization' is not a lower-case HTTP header name",
    ]


def test_one_header_name_for_two_values_or_set_and_removed_is_refused() -> None:
    doc = shipped()
    doc["headers"]["subject"] = "x-client-id"
    doc["headers"]["remove"] = ["authorization", "x-api-id"]
    assert errors_of(doc) == [
        "headers.subject: 'x-client-id' is already used by headers.client_id",
        "headers.remove[1]: 'x-api-id' is set by headers.api_id",
    ]


def test_scopes_must_be_rfc6749_scope_tokens() -> None:
    doc = shipped()
    doc["apis"][0]["resources"][0]["scopes"] = ["orders read"]
    [line] = errors_of(doc)
    assert line.startswith("apis[0].resources[0].scopes: 'orders read' is not an RFC 6749 scope token")


def test_realm_with_quote_is_refused() -> None:
    doc = shipped()
    doc["realm"] = 'a"b'
    [line] = errors_of(doc)
    assert line.startswith("realm: must be non-empty printable ASCII without")


def test_api_hosts_with_port_are_refused_and_hosts_are_lower_cased() -> None:
    doc = shipped()
    doc["apis"][0]["hosts"] = ["API.Example.com:443"]
    [line] = errors_of(doc)
    assert line.startswith("apis[0].hosts: 'API.Example.com:443' is not a host name")
    doc["apis"][0]["hosts"] = ["API.Example.com", "[::1]"]
    assert parse_config(doc).apis[0].hosts == ["api.example.com", "[::1]"]


def test_non_mapping_document_is_refused() -> None:
    assert errors_of(["a", "b"]) == ["(top level): expected a mapping, got list"]
    assert errors_of(None) == ["(top level): expected a mapping, got NoneType"]


def test_env_overrides_listen_and_redis_url() -> None:
    env = {"AUTHZ_LISTEN": "0.0.0.0:7000", "AUTHZ_REDIS_URL": "redis://redis.internal:6379/2"}
    settings = parse_config(shipped(), env)
    assert settings.server.listen == "0.0.0.0:7000"
    assert settings.redis.url == "redis://redis.internal:6379/2"
    assert settings.redis.key_prefix == "authz:"  # the rest of the section is kept
    assert settings.server.decision_timeout == 0.4


def test_env_overrides_http_listen_and_admin_token_and_ignores_empty_values() -> None:
    env = {"AUTHZ_HTTP_LISTEN": "0.0.0.0:7100", "AUTHZ_ADMIN_TOKEN": "a-token-of-24-characters", "AUTHZ_LISTEN": ""}
    settings = parse_config(shipped(), env)
    assert settings.server.http_listen == "0.0.0.0:7100"
    assert settings.admin.token is not None and settings.admin.token.get_secret_value() == "a-token-of-24-characters"
    assert settings.server.listen == "127.0.0.1:9191"  # an empty variable changes nothing
    assert parse_config(shipped(), {}).server.http_listen == "127.0.0.1:9291"  # the demo's, without the variable


def test_server_defaults_fit_a_container() -> None:
    doc = shipped()
    doc["server"] = {}
    server = parse_config(doc).server
    assert (server.workers, server.http_route_headers) == (1, False)  # one process per container
    assert parse_config(shipped()).server.workers == 2  # the demo config asks for two


def test_api_upstream_must_be_scheme_host_port() -> None:
    doc = shipped()
    doc["apis"][0]["upstream"] = "http://echo:8082/path"
    doc["apis"][1]["upstream"] = "ftp://echo"
    assert errors_of(doc) == [
        "apis[0].upstream: 'http://echo:8082/path': only scheme://host[:port], without user, path, query or "
        "fragment",
        "apis[1].upstream: 'ftp://echo': the scheme must be http or https",
    ]
    doc["apis"][0]["upstream"] = "HTTPS://Orders.Example:8443/"
    doc["apis"][1]["upstream"] = "http://[::1]:80"
    apis = parse_config(doc).apis
    assert (apis[0].upstream, apis[1].upstream) == ("https://orders.example:8443", "http://[::1]:80")


def test_a_sandbox_host_cannot_be_a_production_host() -> None:
    doc = shipped()
    doc["apis"][0]["hosts"] = ["api.example.test"]
    doc["apis"][1]["sandbox"] = {"hosts": ["API.example.test"]}
    assert errors_of(doc) == [
        "apis[1].sandbox.hosts[0]: 'api.example.test' is a production host of apis[0]; a host serves one "
        "environment",
    ]
    doc["apis"][1]["sandbox"] = {"hosts": []}
    assert errors_of(doc) == ["apis[1].sandbox.hosts: list should have at least 1 item after validation, not 0"]


def test_env_overrides_are_validated_like_the_file() -> None:
    env = {"AUTHZ_LISTEN": "nope", "AUTHZ_REDIS_URL": "http://x"}
    assert errors_of(shipped(), env) == [
        "server.listen: 'nope' is not host:port (a host name, IPv4 address or [IPv6] address, and a port 1-65535)",
        "redis.url: must start with redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, "
        "redis+cluster:// or rediss+cluster://",
    ]


def test_env_override_on_a_non_mapping_section_is_a_config_error_not_a_crash() -> None:
    doc = shipped()
    doc["server"] = ["x"]
    doc["redis"] = "redis://x"
    errors = errors_of(doc, {"AUTHZ_LISTEN": "0.0.0.0:7000", "AUTHZ_REDIS_URL": "redis://y:1/0"})
    assert errors == [
        "server: input should be a valid dictionary or instance of ServerSettings",
        "redis: input should be a valid dictionary or instance of RedisSettings",
    ]


def test_load_config_applies_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, shipped())
    monkeypatch.setenv("AUTHZ_LISTEN", "127.0.0.1:7001")
    monkeypatch.setenv("AUTHZ_REDIS_URL", "redis://127.0.0.1:7002/0")
    settings = load_config(path)
    assert (settings.server.listen, settings.redis.url) == ("127.0.0.1:7001", "redis://127.0.0.1:7002/0")
    assert load_config(path, env={}).server.listen == "127.0.0.1:9191"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  listen: 127.0.0.1:9191\napis: [\n  - id: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    [line] = info.value.errors
    assert line.startswith(f"{path}: line 4, column 3: invalid YAML: ")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    [line] = info.value.errors
    assert line.startswith(f"{missing}: cannot read: ")
    assert "No such file or directory" in line


# ---- authz check-config FILE ---------------------------------------------------------------------------


def test_check_config_accepts_the_shipped_config() -> None:
    result = check_config(SHIPPED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "config/authz.yaml: valid (1 key manager(s), 2 API(s), listen 127.0.0.1:9191)"
    )
    assert "Traceback" not in result.stderr


def test_check_config_prints_every_error_with_its_path_and_exits_1(tmp_path: Path) -> None:
    doc = shipped()
    del doc["key_managers"][0]["issuer"]
    doc["key_managers"][0]["algorithms"] = ["HS256"]
    doc["key_managers"][0]["bogus"] = 1
    doc["key_managers"].append({**doc["key_managers"][0], "issuer": "https://b.example"})
    doc["server"]["listen"] = "no-port"
    doc["apis"][0]["resources"][0]["path"] = "/a/**/b"
    doc["apis"][0]["resources"][1]["methods"] = ["FETCH"]
    doc["apis"].append(copy.deepcopy(doc["apis"][1]))
    doc["headers"]["subject"] = "X-Subject"
    path = write(tmp_path, doc)
    result = check_config(path)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    for expected in [
        "key_managers[0].issuer: field required",
        "key_managers[0].bogus: unknown field",
        "key_managers[0].algorithms: algorithm 'HS256' not allowed",
        "key_managers[1].algorithms: algorithm 'HS256' not allowed",
        "server.listen: 'no-port' is not host:port",
        "apis[0].resources[0].path: '**' is allowed as the last segment only",
        "apis[0].resources[1].methods: unknown HTTP method 'FETCH'",
        "headers.subject: 'X-Subject' is not a lower-case HTTP header name",
        "key_managers[1].name: 'demo' is already used by key_managers[0]",
        "apis[2].id: 'payments-v1' is already used by apis[1]",
    ]:
        assert expected in out, f"{expected!r} missing from:\n{out}"
    assert f"{path}: 11 error(s)" in result.stderr
    assert "Traceback" not in out


def test_check_config_reports_key_manager_references_shared_issuers_and_preset_contradictions(tmp_path: Path) -> None:
    """Issue 10: an API naming an unknown key manager, an issuer listed by two key managers, and preset fields
    overridden into a contradiction, each as ``yaml.path: reason``, all in one run."""
    doc = shipped()
    demo = doc["key_managers"][0]
    doc["key_managers"] += [
        {**demo, "name": "entra", "issuer": ["https://login.example/t/v2.0", "http://127.0.0.1:8081/"]},
        {**demo, "name": "op", "issuer": "https://op.example", "preset": "rfc9068", "typ": ["JWT"], "audiences": [],
         "client_id_claims": ["azp"]},
    ]
    doc["apis"][0]["key_managers"] = ["demo", "entra", "keycloak"]
    doc["apis"][1]["key_managers"] = ["nope"]
    path = write(tmp_path, doc)
    result = check_config(path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "key_managers[2].audiences: preset rfc9068 needs at least one value in audiences (RFC 9068 section 4: aud "
        "is required and must be checked against the resource's audiences)",
        "key_managers[2].client_id_claims: preset rfc9068 needs client_id_claims to include client_id, got ['azp'] "
        "(RFC 9068 section 2.2: the client is the client_id claim)",
        "key_managers[2].typ: preset rfc9068 accepts only typ at+jwt, got ['JWT'] (RFC 9068 section 2.1: an access "
        "token's typ is at+jwt)",
        "key_managers[1].issuer[1]: 'http://127.0.0.1:8081' is already used by key_managers[0]",
        "apis[0].key_managers[2]: unknown key manager 'keycloak' (configured: demo, entra, op)",
        "apis[1].key_managers[0]: unknown key manager 'nope' (configured: demo, entra, op)",
    ]
    assert f"{path}: 6 error(s)" in result.stderr
    # Once the key managers are valid, the same references are reported by the model-level check.
    doc["key_managers"][2].update(typ=["at+jwt"], audiences=["orders"], client_id_claims=["client_id"])
    result = check_config(write(tmp_path, doc))
    assert result.stdout.splitlines() == [
        "key_managers[1].issuer[1]: 'http://127.0.0.1:8081' is already used by key_managers[0]",
        "apis[0].key_managers[2]: unknown key manager 'keycloak' (configured: demo, entra, op)",
        "apis[1].key_managers[0]: unknown key manager 'nope' (configured: demo, entra, op)",
    ]


def test_check_config_says_rfc9068_needs_audiences(tmp_path: Path) -> None:
    doc = shipped()
    doc["key_managers"][0]["preset"] = "rfc9068"
    del doc["key_managers"][0]["audiences"]
    result = check_config(write(tmp_path, doc))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "key_managers[0].audiences: preset rfc9068 needs at least one value in audiences (RFC 9068 section 4: aud "
        "is required and must be checked against the resource's audiences)"]


def test_check_config_reports_yaml_syntax_error_with_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "key_managers:\n  - name: a\n    issuer: [unclosed\n")
    result = check_config(path)
    assert result.returncode == 1
    assert f"{path}: line 4, column 1: invalid YAML: " in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_reports_an_unreadable_file(tmp_path: Path) -> None:
    result = check_config(tmp_path / "absent.yaml")
    assert result.returncode == 1
    assert f"{tmp_path / 'absent.yaml'}: cannot read: " in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    result = check_config(tmp_path)  # a directory
    assert result.returncode == 1
    assert f"{tmp_path}: cannot read: " in result.stdout


def test_check_config_reports_a_non_mapping_document(tmp_path: Path) -> None:
    for text, kind in [("- a\n- b\n", "list"), ("just text\n", "str"), ("", "NoneType")]:
        path = write(tmp_path, text)
        result = check_config(path)
        assert result.returncode == 1
        assert result.stdout.strip() == f"(top level): expected a mapping, got {kind}"
        assert "Traceback" not in result.stderr


def test_check_config_applies_env_overrides(tmp_path: Path) -> None:
    result = check_config(SHIPPED, {"AUTHZ_LISTEN": "0.0.0.0:7777", "AUTHZ_REDIS_URL": "redis://r:1/0"})
    assert result.returncode == 0, result.stdout
    assert "listen 0.0.0.0:7777" in result.stdout
    result = check_config(SHIPPED, {"AUTHZ_REDIS_URL": "memcached://x"})
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "redis.url: must start with redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, "
        "redis+cluster:// or rediss+cluster://"
    )


def test_two_apis_on_the_same_context_and_hosts_are_refused() -> None:
    from authz.config import ConfigError, parse_config

    doc = yaml.safe_load(Path("config/authz.yaml").read_text())
    doc["apis"][1]["context"] = doc["apis"][0]["context"]
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.errors == ["apis[1].context: '/orders/v1' on the same hosts is already used by apis[0]"]
    doc["apis"][1]["hosts"] = ["payments.example.test"]
    assert len(parse_config(doc).apis) == 2
