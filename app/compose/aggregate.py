"""Declared aggregates: a route's [routes.aggregate] table, checked at start-up and run by app.compose.

A call's path template takes ``{rule_variable}``, ``{query.NAME}``, the caller's ``{sub}`` or
``{consumer}``, and ``{CALL.dot.path}`` (a field of an earlier call's answer: that call runs
first, the others of the same step in parallel). Every value is percent-encoded whole.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Any
from urllib.parse import quote

from flask import Response, g, request
from werkzeug.exceptions import BadRequest, Forbidden

from app.compose.calls import DEFAULT_CONCURRENCY, AggregateFailed, Call, PartFailure, Results, parallel
from app.config import ConfigError, Section
from app.errors import GatewayError, PROBLEM_BASE
from app.compose.shaping import Shape, dot_path, group

__all__ = ["AggregateSettings", "PartSettings", "read_aggregate", "run_aggregate"]

_IDENTITY = ("sub", "consumer")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class MissingQueryParameter(GatewayError, BadRequest):
    """The aggregate needs a query parameter the client did not send."""

    problem = PROBLEM_BASE + "missing-query-parameter"


class MissingIdentity(GatewayError, Forbidden):
    """The aggregate needs the caller's subject (or consumer), and the credentials carry none."""

    problem = PROBLEM_BASE + "missing-identity"


@dataclass(frozen=True)
class PartSettings:
    """One declared call: where it goes, what it needs, and how its answer is shaped."""

    name: str
    upstream: str
    template: str
    fields: tuple[tuple[str, ...], ...]  # each {field} as a dot path
    after: tuple[str, ...]  # the earlier calls whose answers the path uses
    required: bool
    timeout: float | None
    format: str
    shape: Shape
    merge: bool


@dataclass(frozen=True)
class AggregateSettings:
    """A route's aggregate: its deadline, its concurrency cap and its calls in steps."""

    timeout: float
    concurrency: int
    parts: tuple[PartSettings, ...]  # in declaration order: the document's order
    steps: tuple[tuple[PartSettings, ...], ...]  # each step's calls run in parallel, after the step before


def read_aggregate(key: str, raw: object, variables: Collection[str], upstream_names: Collection[str], *,
                   public: bool) -> AggregateSettings:
    """Read and check a [routes.aggregate] table; every error names its key."""
    section = Section(key, raw)
    timeout = section.seconds("timeout", 3.0)
    concurrency = section.integer("concurrency", DEFAULT_CONCURRENCY, minimum=1)
    raw_calls = section.raw("calls")
    if not isinstance(raw_calls, list) or not raw_calls:
        raise ConfigError(section.key("calls"), raw_calls, "a non-empty array of tables ([[...calls]])")
    section.done()
    clash = set(variables) & set(_IDENTITY)
    if clash:
        raise ConfigError(key, sorted(clash), "rule variables not named sub or consumer (those are the caller's)")
    parts: list[PartSettings] = []
    step_of: dict[str, int] = {}
    for index, raw_call in enumerate(raw_calls):
        part = _read_part(Section(f"{section.key('calls')}[{index}]", raw_call), variables, upstream_names,
                          step_of, public)
        step_of[part.name] = 1 + max((step_of[name] for name in part.after), default=-1)
        parts.append(part)
    steps = tuple(tuple(part for part in parts if step_of[part.name] == step)
                  for step in range(max(step_of.values()) + 1))
    return AggregateSettings(timeout=timeout, concurrency=concurrency, parts=tuple(parts), steps=steps)


def _read_part(section: Section, variables: Collection[str], upstream_names: Collection[str],
               earlier: Mapping[str, int], public: bool) -> PartSettings:
    name = section.string("name", pattern=_NAME, expected="a name of letters, digits and _")
    if name in earlier or name in ("_problems", "query"):
        raise ConfigError(section.key("name"), name, "a name no other call of the aggregate uses")
    upstream = section.string("upstream")
    if upstream not in upstream_names:
        raise ConfigError(section.key("upstream"), upstream, "the name of an [upstreams.NAME] table")
    template = section.string("path", expected="a path starting with /")
    fields = _template_fields(section.key("path"), template)
    after: list[str] = []
    for field in fields:
        head = field[0]
        if len(field) == 1 and (head in variables or head in _IDENTITY):
            if head in _IDENTITY and public:
                raise ConfigError(section.key("path"), template, f"no {{{head}}} on a public route (no caller)")
        elif head == "query" and len(field) == 2:
            pass
        elif head in earlier and len(field) > 1:
            if head not in after:
                after.append(head)
        else:
            raise ConfigError(section.key("path"), template, "fields among the rule's variables "
                              f"({', '.join(sorted(variables)) or 'none'}), sub, consumer, query.NAME "
                              f"or EARLIER_CALL.field, not {{{'.'.join(field)}}}")
    format = section.string("format", "json", choices=("json", "xml"))
    timeout = section.seconds("timeout") if section.raw("timeout") is not None else None
    required = section.boolean("required", True)
    merge = section.boolean("merge", False)
    shape = Shape(allow=_paths(section, "allow"), deny=_paths(section, "deny"), rename=_renames(section))
    section.done()
    return PartSettings(name=name, upstream=upstream, template=template, fields=fields, after=tuple(after),
                        required=required, timeout=timeout, format=format, shape=shape, merge=merge)


def _template_fields(key: str, template: str) -> tuple[tuple[str, ...], ...]:
    if not template.startswith("/") or "#" in template or any(c.isspace() or ord(c) < 32 for c in template):
        raise ConfigError(key, template, "a path starting with / (and a query), without spaces or #")
    fields = []
    try:
        for _, field, spec, conversion in Formatter().parse(template):
            if field is None:
                continue
            if spec or conversion or "[" in field:
                raise ValueError("a plain {name} or {name.field}")
            fields.append(dot_path(field))
    except ValueError as error:
        raise ConfigError(key, template, f"a template with {{name}} fields ({error})") from None
    return tuple(fields)


def _paths(section: Section, name: str) -> tuple[tuple[str, ...], ...]:
    try:
        return tuple(dot_path(text) for text in section.strings(name))
    except ValueError as error:
        raise ConfigError(section.key(name), section.raw(name), f"a list of dot paths ({error})") from None


def _renames(section: Section) -> dict[tuple[str, ...], str]:
    raw = section.raw("rename", {})
    if not isinstance(raw, dict):
        raise ConfigError(section.key("rename"), raw, 'a table { "dot.path" = "new_name" }')
    renames = {}
    for path, new in raw.items():
        if not isinstance(new, str) or not new or "." in new:
            raise ConfigError(f"{section.key('rename')}.{path}", new, "a new field name (no dots)")
        try:
            renames[dot_path(path)] = new
        except ValueError as error:
            raise ConfigError(section.key("rename"), path, f"a dot path ({error})") from None
    return renames


def run_aggregate(settings: AggregateSettings, variables: Mapping[str, Any]) -> Response:
    """Run the declared calls, step by step within one deadline, and answer with the shaped document."""
    expires = time.monotonic() + settings.timeout
    results = Results()
    for step in settings.steps:
        calls = []
        for part in step:
            path = _render(part, variables, results)
            if path is not None:
                calls.append(Call(part.upstream, path, part.name, part.timeout, part.required, part.format))
        remaining = max(expires - time.monotonic(), 0.001)
        parallel(*calls, deadline=remaining, concurrency=settings.concurrency, into=results)
    document = group((part.name, part.shape.apply(results[part.name]), part.merge)
                     for part in settings.parts if part.name in results)
    return results.response(document)


def _render(part: PartSettings, variables: Mapping[str, Any], results: Results) -> str | None:
    """The part's path, or None when an earlier optional part it needs is missing (this one then fails)."""
    pieces = []
    # Filled by hand: str.format would read "{user.id}" as an attribute of "user".
    for literal, field, _, _ in Formatter().parse(part.template):
        pieces.append(literal)
        if field is None:
            continue
        value = _value(part, dot_path(field), variables, results)
        if value is None:
            return None
        pieces.append(quote(str(value), safe=""))
    return "".join(pieces)


def _value(part: PartSettings, field: tuple[str, ...], variables: Mapping[str, Any], results: Results) -> Any:
    head = field[0]
    if len(field) == 1 and head in _IDENTITY:
        principal = getattr(g, "principal", None)
        value = getattr(principal, "subject" if head == "sub" else "consumer", None)
        if value is None:
            raise MissingIdentity(f"This route needs the caller's {head}, and the credentials carry none.")
        return value
    if len(field) == 1:
        return variables[head]
    if head == "query":
        value = request.args.get(field[1])
        if value is None:
            raise MissingQueryParameter(f"The query parameter {field[1]!r} is required.")
        return value
    return _from_result(part, field, results)


def _from_result(part: PartSettings, field: tuple[str, ...], results: Results) -> Any:
    head = field[0]
    failure = results.failures.get(head)
    if failure is not None:
        reason = PartFailure(part.name, 502, "dependency", f"It needs the part {head!r}, which is missing.")
        if part.required:
            raise AggregateFailed(f"The required part {part.name!r} failed: {reason.detail}")
        results.failures[part.name] = reason
        return None
    value: Any = results[head]
    for segment in field[1:]:
        value = value.get(segment) if isinstance(value, dict) else None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        reason = PartFailure(part.name, 502, "dependency", f"The part {head!r} has no value at {'.'.join(field[1:])}.")
        if part.required:
            raise AggregateFailed(f"The required part {part.name!r} failed: {reason.detail}")
        results.failures[part.name] = reason
        return None
    return value
