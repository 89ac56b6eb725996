"""Shaping tables (allow, deny, rename, group) and the XML to JSON conversion."""

from __future__ import annotations

from typing import Any

import pytest

from app.compose.shaping import Shape, dot_path, group
from app.compose.xmljson import MAX_DEPTH, XMLRefused, xml_to_json

ORDERS = {"total": 2, "items": [{"id": 1, "total": 9.5, "secret": "x", "lines": [{"sku": "A", "qty": 1}]},
                                {"id": 2, "total": 3.0, "secret": "y", "lines": []}]}


def paths(*texts: str) -> tuple[tuple[str, ...], ...]:
    return tuple(dot_path(text) for text in texts)


@pytest.mark.parametrize(("shape", "expected"), [
    (Shape(allow=paths("total")), {"total": 2}),
    (Shape(allow=paths("items.id", "items.total")),
     {"items": [{"id": 1, "total": 9.5}, {"id": 2, "total": 3.0}]}),
    (Shape(allow=paths("items.lines.sku")), {"items": [{"lines": [{"sku": "A"}]}, {"lines": []}]}),
    (Shape(allow=paths("items", "items.id")), {"items": ORDERS["items"]}),  # the shorter path wins
    (Shape(allow=paths("missing", "total.deeper")), {"total": 2}),
    (Shape(deny=paths("items.secret", "items.lines")),
     {"total": 2, "items": [{"id": 1, "total": 9.5}, {"id": 2, "total": 3.0}]}),
    (Shape(deny=paths("nothing.here")), ORDERS),
    (Shape(allow=paths("items.id"), rename={("items",): "recent_orders"}), {"recent_orders": [{"id": 1}, {"id": 2}]}),
    (Shape(allow=paths("items.id"), rename={("items", "id"): "order_id"}),
     {"items": [{"order_id": 1}, {"order_id": 2}]}),
    (Shape(allow=paths("items.id", "items.secret"), deny=paths("items.secret")), {"items": [{"id": 1}, {"id": 2}]}),
])
def test_shapes(shape: Shape, expected: Any) -> None:
    assert shape.apply(ORDERS) == expected


def test_a_list_answer_is_shaped_element_by_element() -> None:
    assert Shape(allow=paths("id")).apply([{"id": 1, "x": 2}, {"id": 3}, "odd"]) == [{"id": 1}, {"id": 3}, "odd"]


def test_rename_keeps_the_field_in_place() -> None:
    assert list(Shape(rename={("b",): "z"}).apply({"a": 1, "b": 2, "c": 3})) == ["a", "z", "c"]


@pytest.mark.parametrize("text", ["", "a.", ".a", "a..b"])
def test_bad_dot_paths(text: str) -> None:
    with pytest.raises(ValueError):
        dot_path(text)


def test_group_under_names_or_merged() -> None:
    document = group([("user", {"id": 1, "name": "Ann"}, True), ("orders", [1, 2], True), ("prefs", {"x": 1}, False)])
    assert document == {"id": 1, "name": "Ann", "orders": [1, 2], "prefs": {"x": 1}}


@pytest.mark.parametrize(("xml", "expected"), [
    (b"<a>text</a>", {"a": "text"}),
    (b"<a/>", {"a": None}),
    (b'<a id="1"/>', {"a": {"@id": "1"}}),
    (b'<a id="1">t</a>', {"a": {"@id": "1", "#text": "t"}}),
    (b"<a><b>1</b><b>2</b><b>3</b><c>x</c></a>", {"a": {"b": ["1", "2", "3"], "c": "x"}}),
    (b"<a>\n  <b>1</b>\n</a>", {"a": {"b": "1"}}),
    ("<a>caf\u00e9 &amp; &#233;</a>".encode(), {"a": "caf\u00e9 & \u00e9"}),
    (b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>', {"a": "\u00e9"}),
])
def test_xml_to_json(xml: bytes, expected: Any) -> None:
    assert xml_to_json(xml) == expected


@pytest.mark.parametrize("xml", [
    b"",
    b"<a>",
    b"not xml",
    b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
    b'<!DOCTYPE a [<!ENTITY l "lol"><!ENTITY l2 "&l;&l;&l;&l;">]><a>&l2;</a>',
    b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/a.dtd"><a/>',
    b"<a>&undefined;</a>",
    b"<a>" * (MAX_DEPTH + 1) + b"</a>" * (MAX_DEPTH + 1),
])
def test_xml_refused(xml: bytes) -> None:
    with pytest.raises(XMLRefused):
        xml_to_json(xml)
