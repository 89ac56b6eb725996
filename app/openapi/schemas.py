"""Request and response schemas on routes: ``@declare_schema`` for code, schema keys for declared routes.

A schema is JSON Schema Draft 2020-12 (the dialect OpenAPI 3.1 uses), checked against the
meta-schema and compiled once, when the route is made. It documents the route in the OpenAPI
document, and with ``validate`` it is enforced on request bodies (app/openapi/validation.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from flask import request
from jsonschema import Draft202012Validator, SchemaError

from app.config import ConfigError, Section
from app.openapi.validation import check_body
from app.policies import add_policy, route_policy

__all__ = ["BODY_METHODS", "RouteSchema", "apply_schema", "declare_schema", "read_route_schema", "schema_of"]

#: The methods whose request body a schema describes and validation checks.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DIALECT = "https://json-schema.org/draft/2020-12/schema"

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class RouteSchema:
    """What a route says about its bodies: the request's JSON Schema, the answers' by status, and enforcement."""

    request: Mapping[str, Any] | None
    responses: Mapping[int, Mapping[str, Any]]
    validate: bool
    validator: Draft202012Validator | None = field(default=None, compare=False, repr=False)


def schema_of(view: Callable[..., Any]) -> RouteSchema | None:
    """The schema a registered view was given, or None."""
    schemas = route_policy(view).settings("schema")
    schema = schemas[0] if schemas else None
    return schema if isinstance(schema, RouteSchema) else None


def declare_schema(*, request: Mapping[str, Any] | None = None,
                   responses: Mapping[int, Mapping[str, Any]] | None = None,
                   validate: bool = False) -> Callable[[View], View]:
    """Attach JSON Schemas to a code route; ``validate=True`` also refuses request bodies that do not match.

    It runs after auth and the limit and before the cache, wherever it is written (app/policies.py).
    """
    def decorate(view: View) -> View:
        key = f"declare_schema of {view.__module__}.{view.__qualname__}"
        answers = {_status(f"{key}.responses", status): (f"{key}.responses.{status}", value)
                   for status, value in (responses or {}).items()}
        return apply_schema(route_schema((f"{key}.request", request), answers, (f"{key}.validate", validate)))(view)

    return decorate


def route_schema(request_schema: tuple[str, object], responses: Mapping[int, tuple[str, object]],
                 validate: tuple[str, object]) -> RouteSchema:
    """A checked, compiled RouteSchema from (key, value) pairs; an error names the key and the part at fault."""
    (request_key, request_value), (validate_key, enforce) = request_schema, validate
    if not isinstance(enforce, bool):
        raise ConfigError(validate_key, enforce, "true or false")
    if request_value is not None:
        _check(request_key, request_value)
    elif enforce:
        raise ConfigError(validate_key, enforce, "a request schema to validate against (or false)")
    checked: dict[int, Mapping[str, Any]] = {}
    for code, (key, value) in responses.items():
        _check(key, value)
        checked[code] = cast(Mapping[str, Any], value)
    # Formats stay annotations, as Draft 2020-12 has them by default (docs/decisions.md).
    request_body = cast(Mapping[str, Any] | None, request_value)
    validator = Draft202012Validator(request_body) if enforce and request_body is not None else None
    return RouteSchema(request=request_body, responses=checked, validate=enforce, validator=validator)


def apply_schema(schema: RouteSchema) -> Callable[[View], View]:
    """The decorator that records ``schema`` on a view and, when it validates, checks each request body."""
    def decorate(view: View) -> View:
        return add_policy(view, "schema", schema, _validated)

    return decorate


def _validated(schemas: tuple[Any, ...], view: Callable[..., Any]) -> Callable[..., Any]:
    """The schema layer: a body that does not match is refused before ``view``; documentation only adds nothing."""
    schema: RouteSchema = schemas[0]
    validator = schema.validator
    if not schema.validate or validator is None:
        return view

    @functools.wraps(view)
    def validated(*args: Any, **kwargs: Any) -> Any:
        if request.method in BODY_METHODS:
            refused = check_body(validator)
            if refused is not None:
                return refused
        return view(*args, **kwargs)

    return validated


def read_route_schema(section: Section, methods: Iterable[str]) -> RouteSchema | None:
    """A declared route's ``request_schema``, ``response_schema`` and ``validate``, or None when it sets none."""
    if not any(section.has(name) for name in ("request_schema", "response_schema", "validate")):
        return None
    request_schema = section.raw("request_schema")
    if request_schema is not None and not BODY_METHODS & set(methods):
        raise ConfigError(section.key("request_schema"), "<schema>",
                          "a route whose methods carry a body (POST, PUT or PATCH)")
    key = section.key("response_schema")
    raw = section.raw("response_schema")
    responses: dict[int, tuple[str, object]] = {}
    # A table keyed by status codes documents several answers; any other table is the 200 answer's schema.
    if isinstance(raw, Mapping) and raw and all(isinstance(name, str) and name.isdigit() for name in raw):
        responses = {_status(key, status): (f"{key}.{status}", value) for status, value in raw.items()}
    elif raw is not None:
        responses = {200: (key, raw)}
    return route_schema((section.key("request_schema"), request_schema), responses,
                        (section.key("validate"), section.raw("validate", False)))


def _status(key: str, status: object) -> int:
    code = int(status) if isinstance(status, str) and status.isdigit() else status
    if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
        raise ConfigError(key, status, "HTTP status codes (100 to 599) as keys")
    return code


def _check(key: str, schema: object) -> None:
    """Refuse anything but a self-contained, valid Draft 2020-12 schema that is plain JSON."""
    if not isinstance(schema, Mapping):
        raise ConfigError(key, schema, "a JSON Schema (a table / an object)")
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as error:  # TOML dates and times, NaN: not JSON
        raise ConfigError(key, "<schema>", f"a schema of JSON values only ({error})") from None
    _refuse_references(key, schema)
    dialect = schema.get("$schema", _DIALECT)
    if dialect != _DIALECT:
        raise ConfigError(f"{key}.$schema", dialect, f"{_DIALECT} (the dialect OpenAPI 3.1 uses) or no $schema")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
        raise ConfigError(key + where, error.instance, f"a valid JSON Schema (Draft 2020-12): {error.message}") \
            from None


def _refuse_references(key: str, node: object) -> None:
    # A $ref would resolve against the OpenAPI document once the schema is embedded in it, not
    # against the schema itself; and a remote one would be fetched. Self-contained schemas only.
    if isinstance(node, Mapping):
        for name, value in node.items():
            if name in ("$ref", "$dynamicRef") and isinstance(value, str):
                raise ConfigError(f"{key}.{name}", value, "a self-contained schema: $ref is not supported "
                                                          "(write the definition in place)")
            _refuse_references(f"{key}.{name}", value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _refuse_references(f"{key}[{index}]", value)
