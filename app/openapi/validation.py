"""Request body validation: a route's JSON Schema enforced before the request goes anywhere.

Answers (RFC 9110, RFC 9457): a body that is not JSON by its media type, or is content-coded,
gets 415; a JSON body that does not parse gets 400; one that parses but breaks the schema gets 400
with an ``errors`` member naming each field by JSON Pointer (RFC 6901). A body that passes is put
back exactly as it arrived, so the upstream receives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import orjson
from flask import Response, request
from jsonschema import Draft202012Validator, ValidationError
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app.errors import GatewayError, PROBLEM_BASE, problem_response

__all__ = ["INVALID_BODY", "BodyNotJson", "BodyRequired", "check_body", "pointer"]

INVALID_BODY = PROBLEM_BASE + "invalid-body"
# A schema message repeats the offending value; a client's megabyte string is not echoed back whole.
_MAX_MESSAGE = 200
_MAX_ERRORS = 10


class BodyNotJson(GatewayError, UnsupportedMediaType):
    """The route takes JSON, and the body's media type (or content coding) says it is something else."""

    problem = PROBLEM_BASE + "unsupported-media-type"


class BodyRequired(GatewayError, BadRequest):
    """The route takes a JSON body, and the request has none, or one that does not parse."""

    problem = INVALID_BODY


def check_body(validator: Draft202012Validator) -> Response | None:
    """None when the request's body is JSON matching ``validator``'s schema; else the 400 to answer with."""
    data = request.get_data(cache=True)
    # The forwarding layer reads the body from wsgi.input: give it the same bytes back.
    request.environ["wsgi.input"] = io.BytesIO(data)
    if not data:
        raise BodyRequired("This route needs a JSON body (Content-Type: application/json).")
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    mimetype = request.mimetype
    if coding != "identity" or not (mimetype == "application/json" or mimetype.endswith("+json")):
        raise BodyNotJson("This route takes a JSON body (Content-Type: application/json, no Content-Encoding).")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise BodyRequired(f"The body is not valid JSON: {error}.") from None
    problems = list(_problems(validator.iter_errors(document)))
    if not problems:
        return None
    first = problems[0]
    detail = f"The body does not match this route's schema: {first['pointer'] or '/'}: {first['detail']}"
    return problem_response(400, "Bad Request", detail, INVALID_BODY, members={"errors": problems[:_MAX_ERRORS]})


def pointer(path: Iterator[str | int] | list[str | int]) -> str:
    """The JSON Pointer (RFC 6901) of a path into a document: ``/items/0/qty``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _problems(errors: Iterator[ValidationError]) -> Iterator[dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    for error in sorted(errors, key=lambda error: (list(map(str, error.absolute_path)), str(error.validator))):
        path = list(error.absolute_path)
        required = error.validator_value
        if error.validator == "required" and isinstance(error.instance, dict) and isinstance(required, list):
            # Name the missing member itself, not the object that lacks it.
            for name in required:
                if name not in error.instance:
                    item = {"pointer": pointer([*path, name]), "detail": "a required member is missing"}
                    if (item["pointer"], item["detail"]) not in seen:
                        seen.add((item["pointer"], item["detail"]))
                        yield item
            continue
        message = error.message if len(error.message) <= _MAX_MESSAGE else error.message[:_MAX_MESSAGE - 3] + "..."
        item = {"pointer": pointer(path), "detail": message}
        if (item["pointer"], item["detail"]) not in seen:
            seen.add((item["pointer"], item["detail"]))
            yield item
