"""Upstream paths: check_path refuses anything that could climb out; templates are filled encoded."""

from __future__ import annotations

import pytest

from app.errors import PathRefused
from app.proxy.paths import UpstreamPath, check_path

DOT_SEGMENT = "The path contains a dot-segment or a forbidden character."
DOUBLE_ENCODED = "The path is encoded more than once."
HIDDEN_SLASH = "The path hides a slash in a segment (%2F)."


@pytest.mark.parametrize("path", [
    "/",
    "",
    "/users/42",
    "/users/42/",
    "/a%20b/c%20d",
    "/a+b",
    "/%41",
    "/%C3%A9t%C3%A9",
    "/é",
    "//a//b//",
    "/a..b",
    "/a.",
    "/.a",
    "/...",
    "/.well-known/openid-configuration",
    "/v1.2/file.tar.gz",
    "/100%25",
    "/~user/!$&'()*,;=:@",
    "/a%3Fb",
    "/a%23b",
])
def test_accepted_paths(path: str) -> None:
    check_path(path)


@pytest.mark.parametrize(("path", "description"), [
    ("/a/../b", DOT_SEGMENT),
    ("/..", DOT_SEGMENT),
    ("..", DOT_SEGMENT),
    ("/a/..", DOT_SEGMENT),
    ("/a/./b", DOT_SEGMENT),
    ("/.", DOT_SEGMENT),
    ("/a/%2e%2e/b", DOT_SEGMENT),
    ("/a/%2E%2E/b", DOT_SEGMENT),
    ("/a/%2E%2e/b", DOT_SEGMENT),
    ("/a/.%2e/b", DOT_SEGMENT),
    ("/a/%2e./b", DOT_SEGMENT),
    ("/a/%2e/b", DOT_SEGMENT),
    ("/a/%2f/b", HIDDEN_SLASH),
    ("/a/b%2Fc", HIDDEN_SLASH),
    ("/a/..%2f..%2fetc", HIDDEN_SLASH),
    ("/a/%5c/b", DOT_SEGMENT),
    ("/a/..%5C..", DOT_SEGMENT),
    ("/a\\b", DOT_SEGMENT),
    ("/a\\..\\b", DOT_SEGMENT),
    ("/a/%00", DOT_SEGMENT),
    ("/a\x00b", DOT_SEGMENT),
    ("/a%0d%0aSet-Cookie:x", DOT_SEGMENT),
    ("/a\tb", DOT_SEGMENT),
    ("/a\nb", DOT_SEGMENT),
    ("/a%1fb", DOT_SEGMENT),
    ("/a%7f", DOT_SEGMENT),
    ("/a/%252e%252e/b", DOUBLE_ENCODED),
    ("/a/%252E%252E/b", DOUBLE_ENCODED),
    ("/a/%252f/b", DOUBLE_ENCODED),
    ("/a/%255c/b", DOUBLE_ENCODED),
    ("/a/%2525/b", DOUBLE_ENCODED),
    ("/a/%25%32%65%25%32%65/b", DOUBLE_ENCODED),
    ("/ok/ok/%2e%2e", DOT_SEGMENT),
])
def test_refused_paths(path: str, description: str) -> None:
    with pytest.raises(PathRefused) as caught:
        check_path(path)
    assert caught.value.description == description
    assert caught.value.code == 400


@pytest.mark.parametrize(("values", "rendered"), [
    ({"rest": "a/b/c"}, "/v2/a/b/c"),
    ({"rest": "a b"}, "/v2/a%20b"),
    ({"rest": "été/ü"}, "/v2/%C3%A9t%C3%A9/%C3%BC"),
    ({"rest": "a?b=1"}, "/v2/a%3Fb=1"),
    ({"rest": "a#frag"}, "/v2/a%23frag"),
    ({"rest": "100%"}, "/v2/100%25"),
    ({"rest": "%2e%2e"}, "/v2/%252e%252e"),
    ({"rest": "a\\b"}, "/v2/a%5Cb"),
    ({"rest": "a\r\nb"}, "/v2/a%0D%0Ab"),
    ({"rest": "~user/!$&'()*+,;=:@-._"}, "/v2/~user/!$&'()*+,;=:@-._"),
    ({"rest": 42}, "/v2/42"),
])
def test_render_percent_encodes_values(values: dict[str, object], rendered: str) -> None:
    assert UpstreamPath("/v2/{rest}").render(values) == rendered


def test_render_fills_every_field_and_keeps_literal_text() -> None:
    template = UpstreamPath("/orgs/{org}/users/{id}/x%20y")
    assert template.fields == ("org", "id")
    assert template.render({"org": "a b", "id": 7, "unused": "?"}) == "/orgs/a%20b/users/7/x%20y"


def test_render_same_field_twice() -> None:
    template = UpstreamPath("/{id}/{id}")
    assert template.fields == ("id", "id")
    assert template.render({"id": "é"}) == "/%C3%A9/%C3%A9"


def test_template_without_fields_renders_as_written() -> None:
    template = UpstreamPath("/static/{{literal}}")
    assert template.fields == ()
    assert template.render({"rest": "ignored"}) == "/static/{literal}"


def test_render_needs_every_field() -> None:
    with pytest.raises(KeyError, match="rest"):
        UpstreamPath("/v2/{rest}").render({})


@pytest.mark.parametrize("path", ["/api/..;/admin", "/api/..;x=1/admin", "/api/.;/admin"])
def test_dot_segment_with_path_parameter_is_refused(path: str) -> None:
    with pytest.raises(PathRefused):
        check_path(path)
