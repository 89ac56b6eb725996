"""XML answers turned into JSON values, with expat directly: no DTD, no entity is ever declared or resolved.

The mapping (the common "Parker/BadgerFish" middle ground, as xmltodict writes it):
an element with only text becomes that string; attributes become ``@name`` keys; text next to
attributes or children becomes ``#text``; repeated child elements become a list; an empty
element becomes None. The document's root element is the one key of the result.
"""

from __future__ import annotations

from typing import Any
from xml.parsers import expat

__all__ = ["XMLRefused", "xml_to_json"]

#: Nesting deeper than this is refused: no legitimate service answer needs it, a hostile one might.
MAX_DEPTH = 64


class XMLRefused(ValueError):
    """The document is not well-formed, declares a DTD or entities, or nests too deep."""


class _Builder:
    """Expat callbacks that build the JSON value one element at a time."""

    def __init__(self) -> None:
        # Each open element: its name, its attributes/children so far, its text pieces.
        self.stack: list[tuple[str, dict[str, Any], list[str]]] = []
        self.root: dict[str, Any] | None = None

    def start(self, name: str, attributes: dict[str, str]) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise XMLRefused(f"elements nested deeper than {MAX_DEPTH}")
        self.stack.append((name, {f"@{key}": value for key, value in attributes.items()}, []))

    def text(self, data: str) -> None:
        if self.stack:
            self.stack[-1][2].append(data)

    def end(self, name: str) -> None:
        _, fields, pieces = self.stack.pop()
        text = "".join(pieces).strip()
        value: Any
        if not fields:
            value = text or None
        else:
            if text:
                fields["#text"] = text
            value = fields
        if self.stack:
            _add_child(self.stack[-1][1], name, value)
        else:
            self.root = {name: value}


def _add_child(fields: dict[str, Any], name: str, value: Any) -> None:
    """A second child of the same name turns the key into a list (element values are never lists)."""
    if name not in fields:
        fields[name] = value
    elif isinstance(fields[name], list):
        fields[name].append(value)
    else:
        fields[name] = [fields[name], value]


def _refuse(*_: object) -> None:
    raise XMLRefused("document type declarations and entities are not accepted")


def xml_to_json(document: bytes) -> dict[str, Any]:
    """The JSON value of an XML document; XMLRefused when it is not plain, well-formed XML."""
    parser = expat.ParserCreate()
    # A DTD is where entities (external ones included) would be declared: refuse it outright,
    # so nothing can be fetched, expanded or amplified (billion laughs), whatever expat's version.
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse  # type: ignore[assignment]
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    builder = _Builder()
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.text
    try:
        parser.Parse(document, True)
    except expat.ExpatError as error:
        raise XMLRefused(f"not well-formed XML ({expat.ErrorString(error.code)})") from None
    if builder.root is None:
        raise XMLRefused("no root element")
    return builder.root
