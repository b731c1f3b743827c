"""Route phase: path canonicalisation (C21, C22) and API/resource matching."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import ApiSettings
from authz.decide.routes import Route, RouteTable, normalize_path
from authz.errors import Denial, Reason
from authz.model import Request

ADMIN = {"id": "admin-v1", "name": "Admin", "context": "/admin/v1", "resources": [{"path": "/**", "scopes": ["admin:all"]}]}
PUBLIC = {"id": "orders-public", "name": "Public", "context": "/orders/v1/public", "resources": [{"path": "/**"}]}
FILES = {
    "id": "files",
    "name": "Files",
    "context": "/files",
    "hosts": ["files.example.com"],
    "resources": [
        {"path": "/", "methods": ["GET"]},
        {"path": "/**", "methods": ["GET"], "scopes": ["files:list"]},
        {"path": "/{folder}/b", "scopes": ["files:b"]},
        {"path": "/a/*", "methods": ["GET"], "scopes": ["files:a-any"]},
        {"path": "/a/b", "methods": ["GET"], "scopes": ["files:a-b"]},
        {"path": "/a/**", "methods": ["DELETE"], "scopes": ["files:delete"]},
    ],
}


DEMO_APIS: list[dict[str, Any]] = yaml.safe_load(Path("config/authz.yaml").read_text(encoding="utf-8"))["apis"]


def route_table(apis: list[dict[str, Any]], cache_size: int = 10_000) -> RouteTable:
    """A route table over these ``apis[]`` entries (validated as the config loader does)."""
    return RouteTable([ApiSettings.model_validate(api) for api in apis], cache_size)


@pytest.fixture
def table() -> RouteTable:
    return route_table([*DEMO_APIS, ADMIN, PUBLIC, FILES])


def resolve(
    table: RouteTable, path: str, method: str = "GET", host: str = "api.example.com", **ext: str
) -> Route:
    return table.resolve(Request(method=method, path=path, host=host, headers={}, context_extensions=ext))


def denial(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Denial:
    with pytest.raises(Denial) as info:
        fn(*args, **kwargs)
    return info.value


# ---- normalize_path ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/orders/v1/items", "/orders/v1/items"),
        # C21: dot segments, encoded dots and repeated slashes are canonicalised (RFC 3986 section 5.2.4)
        ("/orders/v1/public/../../admin/v1/users", "/orders/admin/v1/users"),
        ("/orders/v1/public/../../../admin/v1/users", "/admin/v1/users"),
        ("/orders/v1/public/%2e%2e/%2e%2e/%2E%2E/admin/v1/users", "/admin/v1/users"),
        ("/orders/v1/public/.%2e/%2E./%2e%2E/admin/v1/users", "/admin/v1/users"),
        ("//admin/v1/users", "/admin/v1/users"),
        ("/admin//v1///users", "/admin/v1/users"),
        ("/admin/v1/users/", "/admin/v1/users/"),
        ("/ADMIN/v1/users", "/ADMIN/v1/users"),
        ("/../../..", "/"),
        ("/a/b/..", "/a/"),
        ("/a/./b/.", "/a/b/"),
        ("/a/.../b", "/a/.../b"),
        # unreserved characters decoded, other escapes kept with upper-case hex, never decoded twice
        ("/%7Euser/%41%62c", "/~user/Abc"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a/%252e%252e/b", "/a/%252e%252e/b"),
        # C22: query and fragment are not part of the path
        ("/orders/v1/items?limit=10", "/orders/v1/items"),
        ("/orders/v1/items?next=/admin/v1/users", "/orders/v1/items"),
        ("/orders/v1/items#frag", "/orders/v1/items"),
        ("/orders/v1/items?x=/../..#/../..", "/orders/v1/items"),
    ],
)
def test_paths_are_canonicalised_before_matching(raw: str, canonical: str) -> None:
    assert normalize_path(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "description"),
    [
        ("/orders/v1/public/..%2f..%2fadmin/v1/users", "The request path contains an encoded slash or backslash (%2F or %5C)"),
        ("/orders/v1/public%2Fhealth", "The request path contains an encoded slash or backslash (%2F or %5C)"),
        ("/orders/v1/public%5c..%5cadmin", "The request path contains an encoded slash or backslash (%2F or %5C)"),
        ("/orders/v1/public/health\\..\\..\\..\\admin", "The request path contains a backslash"),
        ("/admin/v1;x=1/users", "The request path contains a ';' path parameter"),
        ("/admin/v1%3bx=1/users", "The request path contains a ';' path parameter"),
        ("/a/%00", "The request path contains an encoded control character"),
        ("/a b", "The request path contains a space or control character"),
        ("/a\r\nb", "The request path contains a space or control character"),
        ("/a/%zz", "The request path has a malformed percent-encoding"),
        ("/a/%4", "The request path has a malformed percent-encoding"),
        ("admin/v1/users", "The request path is not an absolute path"),
        ("", "The request path is not an absolute path"),
        ("*", "The request path is not an absolute path"),
    ],
)
def test_ambiguous_paths_are_refused_with_400(raw: str, description: str) -> None:
    d = denial(normalize_path, raw)
    assert d.reason is Reason.INVALID_REQUEST
    assert d.reason.info.http_status == 400
    assert d.description == description


# ---- C21 through the route table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/orders/v1/public/../../../admin/v1/users",
        "/orders/v1/public/%2e%2e/%2e%2e/%2e%2e/admin/v1/users",
        "//admin/v1/users",
        "/admin//v1/users",
        "/admin/v1/users/",
    ],
)
def test_dot_segment_and_double_slash_forms_resolve_to_the_admin_api(table: RouteTable, path: str) -> None:
    route = resolve(table, path)
    assert route.api.id == "admin-v1"
    assert route.resource.scopes == ["admin:all"]


def test_dot_segments_cannot_climb_out_of_the_public_api(table: RouteTable) -> None:
    # RFC 3986: two '..' from /orders/v1/public/ lead to /orders/, which no API owns: default deny.
    d = denial(resolve, table, "/orders/v1/public/../../admin/v1/users")
    assert d.reason is Reason.NO_MATCHING_RESOURCE
    assert d.reason.info.code == 900906


def test_upper_case_path_matches_no_api(table: RouteTable) -> None:
    d = denial(resolve, table, "/ADMIN/v1/users")
    assert (d.reason, d.description) == (Reason.NO_MATCHING_RESOURCE, "No API matches the request path")


def test_context_prefix_match_is_segment_aware(table: RouteTable) -> None:
    # /orders/v1/publicity is not under /orders/v1/public: it falls to orders-v1, which has no such resource
    d = denial(resolve, table, "/orders/v1/publicity")
    assert d.reason is Reason.NO_MATCHING_RESOURCE
    assert d.description == "No resource of API 'orders-v1' matches GET /orders/v1/publicity"
    assert resolve(table, "/orders/v1/public").api.id == "orders-public"
    assert resolve(table, "/orders/v1/public/health").api.id == "orders-public"


@pytest.mark.parametrize(
    "path", ["/orders/v1/public%2Fhealth", "/orders/v1/public%5chealth", "/orders/v1/public/health\\..\\admin"]
)
def test_encoded_slash_or_backslash_is_a_400_before_any_matching(table: RouteTable, path: str) -> None:
    assert denial(resolve, table, path).reason is Reason.INVALID_REQUEST


# ---- C22 ------------------------------------------------------------------------------------------------


def test_query_string_is_stripped_before_matching(table: RouteTable) -> None:
    route = resolve(table, "/orders/v1/items?limit=10")
    assert (route.api.id, route.resource.path, route.path) == ("orders-v1", "/items", "/orders/v1/items")
    route = resolve(table, "/orders/v1/items?next=/admin/v1/users")
    assert route.api.id == "orders-v1"
    assert resolve(table, "/admin/v1/users?x=/orders/v1/items").api.id == "admin-v1"
    assert resolve(table, "/orders/v1/items#frag").resource.path == "/items"


def test_path_parameters_are_a_400(table: RouteTable) -> None:
    d = denial(resolve, table, "/admin/v1;x=1/users")
    assert (d.reason, d.description) == (Reason.INVALID_REQUEST, "The request path contains a ';' path parameter")


def test_context_extension_api_id_selects_the_api(table: RouteTable) -> None:
    # the route names the API: its host and the path's context prefix do not choose it
    route = resolve(table, "/orders/v1/items", host="anything.example", api_id="orders-v1")
    assert (route.api.id, route.resource.path) == ("orders-v1", "/items")
    # a path outside the API's context is matched against its resources from the root (rewritten routes)
    route = resolve(table, "/items/42", api_id="orders-v1")
    assert (route.api.id, route.resource.path) == ("orders-v1", "/items/{id}")
    # ... and never against another API's resources
    d = denial(resolve, table, "/admin/v1/users", api_id="orders-v1")
    assert d.reason is Reason.NO_MATCHING_RESOURCE
    assert d.description == "No resource of API 'orders-v1' matches GET /admin/v1/users"


def test_unknown_context_extension_api_id_is_denied_with_900906(table: RouteTable) -> None:
    d = denial(resolve, table, "/orders/v1/items", api_id="nope")
    assert d.reason is Reason.NO_MATCHING_RESOURCE
    assert d.reason.info.code == 900906
    assert d.reason.info.http_status == 403
    assert d.description == "The route names an API that is not configured"
    assert d.log_detail == "context_extensions.api_id='nope' is unknown"


# ---- templates, methods, ordering, hosts ----------------------------------------------------------------


def test_path_parameter_template_matches_one_non_empty_segment(table: RouteTable) -> None:
    assert resolve(table, "/orders/v1/items/12").resource.path == "/items/{id}"
    assert resolve(table, "/orders/v1/items/12/").resource.path == "/items/{id}"
    assert denial(resolve, table, "/orders/v1/items/12/parts").reason is Reason.NO_MATCHING_RESOURCE


def test_method_filtering_picks_the_resource_of_the_method(table: RouteTable) -> None:
    assert resolve(table, "/orders/v1/items", "GET").resource.scopes == ["orders:read"]
    assert resolve(table, "/orders/v1/items", "POST").resource.scopes == ["orders:write"]
    assert resolve(table, "/orders/v1/items", "post").resource.scopes == ["orders:write"]
    d = denial(resolve, table, "/orders/v1/items", "DELETE")
    assert d.description == "No resource of API 'orders-v1' matches DELETE /orders/v1/items"


def test_most_specific_resource_wins_whatever_the_config_order(table: RouteTable) -> None:
    files = "files.example.com"
    assert resolve(table, "/files/a/b", host=files).resource.scopes == ["files:a-b"]  # two literals
    assert resolve(table, "/files/a/c", host=files).resource.scopes == ["files:a-any"]  # '*' before '**'
    assert resolve(table, "/files/z/b", "POST", host=files).resource.scopes == ["files:b"]  # {folder} for POST
    assert resolve(table, "/files/z/b", host=files).resource.scopes == ["files:b"]  # a literal beats '**'
    assert resolve(table, "/files/x/y/z", host=files).resource.scopes == ["files:list"]  # '**': any rest
    assert resolve(table, "/files/a/x/y", "DELETE", host=files).resource.scopes == ["files:delete"]
    assert resolve(table, "/files", host=files).resource.path == "/"
    assert resolve(table, "/files/", host=files).resource.path == "/"


def test_star_matches_exactly_one_segment(table: RouteTable) -> None:
    d = denial(resolve, table, "/files/a/x/y", "PUT", host="files.example.com")
    assert d.reason is Reason.NO_MATCHING_RESOURCE


def test_api_hosts_are_matched_case_insensitively_without_port(table: RouteTable) -> None:
    assert resolve(table, "/files/a/b", host="FILES.example.com:8443").api.id == "files"
    d = denial(resolve, table, "/files/a/b", host="other.example.com")
    assert (d.reason, d.description) == (Reason.NO_MATCHING_RESOURCE, "No API matches the request path")


def test_host_bound_api_wins_over_any_host_api_with_the_same_context() -> None:
    any_host = {"id": "v1-any", "name": "Any", "context": "/v1", "resources": [{"path": "/**"}]}
    bound = {"id": "v1-bound", "name": "Bound", "context": "/v1", "hosts": ["a.example", "[::1]"],
             "resources": [{"path": "/**"}]}
    for apis in ([any_host, bound], [bound, any_host]):
        table = route_table(apis)
        assert resolve(table, "/v1/x", host="a.example").api.id == "v1-bound"
        assert resolve(table, "/v1/x", host="[::1]:8080").api.id == "v1-bound"
        assert resolve(table, "/v1/x", host="b.example").api.id == "v1-any"


def test_longest_context_wins(table: RouteTable) -> None:
    assert resolve(table, "/orders/v1/public/x").api.id == "orders-public"
    assert resolve(table, "/orders/v1/items").api.id == "orders-v1"


def test_resolutions_are_cached_per_path_method_host_and_api_id() -> None:
    ROUTE_CACHE_SIZE = 50
    table = route_table(DEMO_APIS, ROUTE_CACHE_SIZE)
    first = table.resolve(Request("GET", "/orders/v1/items?a=1", "h", {}, {"api_id": "orders-v1"}))
    again = table.resolve(Request("GET", "/orders/v1/items?a=1", "h", {}, {"api_id": "orders-v1"}))
    assert again is first
    post = table.resolve(Request("POST", "/orders/v1/items?a=1", "h", {}, {"api_id": "orders-v1"}))
    assert post is not first and post.resource.methods == ["POST"]
    for i in range(ROUTE_CACHE_SIZE + 10):
        table.resolve(Request("GET", f"/orders/v1/items/{i}", "h", {}, {}))
    assert len(table._cache) == ROUTE_CACHE_SIZE
