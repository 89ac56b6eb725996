"""Upstream paths: refuse what could climb out of a route, and fill templates from the rule."""

from __future__ import annotations

import re
from collections.abc import Mapping
from string import Formatter
from urllib.parse import quote, unquote

from app.errors import PathRefused

__all__ = ["UpstreamPath", "check_path"]

# After one round of percent-decoding, a segment must not still hide a dot, a slash, a
# backslash or a percent sign (double encoding), nor contain a NUL or a control character.
_STILL_ENCODED = re.compile(r"%(2e|2f|5c|25)", re.IGNORECASE)
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
# Characters a path segment may carry unencoded (RFC 3986 pchar, without "%").
_PCHAR = "!$&'()*+,;=:@-._~"


def check_path(raw_path: str) -> None:
    """Refuse a raw request path with dot-segments or encoded separators anywhere in it."""
    for segment in raw_path.split("/"):
        if "%" in segment:
            if _STILL_ENCODED.search(unquote(segment)):
                raise PathRefused("The path is encoded more than once.")
            decoded = unquote(segment)
            if "/" in decoded:
                raise PathRefused("The path hides a slash in a segment (%2F).")
        else:
            decoded = segment
        # "..;x" counts too: servlet containers drop the ";..." parameters, then climb.
        if decoded.split(";", 1)[0] in (".", "..") or _FORBIDDEN.search(decoded):
            raise PathRefused("The path contains a dot-segment or a forbidden character.")


class UpstreamPath:
    """An ``upstream_path`` template such as ``/users/{rest}``, filled from the rule's variables."""

    def __init__(self, template: str) -> None:
        """Parse ``template``; ValueError when a field is not a plain ``{name}``."""
        self.template = template
        fields = []
        for _, name, spec, conversion in Formatter().parse(template):
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                raise ValueError(f"{{{name}}} must be a plain {{name}}, without conversion, format or index")
            fields.append(name)
        self.fields = tuple(fields)

    def render(self, values: Mapping[str, object]) -> str:
        """The template with each value percent-encoded, ``/`` kept (a ``path`` value spans segments)."""
        return self.template.format_map({name: quote(str(values[name]), safe=_PCHAR + "/") for name in self.fields})
