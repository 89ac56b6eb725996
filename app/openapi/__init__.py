"""Route schemas: the policy that declares and validates a route's bodies (docs/openapi.md).

The document built from them, its endpoint and its CLI command read the route inventory, so they
sit with the operators' tools (app/operators/openapi/), above the routes.
"""

from __future__ import annotations

from app.openapi.schemas import BODY_METHODS, RouteSchema, apply_schema, declare_schema, read_route_schema, schema_of
from app.openapi.settings import OpenApiSettings, read_openapi_settings
from app.openapi.validation import INVALID_BODY, BodyNotJson, BodyRequired

__all__ = [
    "BODY_METHODS", "INVALID_BODY", "BodyNotJson", "BodyRequired", "OpenApiSettings", "RouteSchema", "apply_schema",
    "declare_schema", "read_openapi_settings", "read_route_schema", "schema_of",
]
