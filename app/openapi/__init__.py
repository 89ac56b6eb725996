"""Route schemas and the OpenAPI 3.1 document of the gateway (docs/openapi.md).

This package's top level holds what routes use (``declare_schema``, the declared routes' schema
keys), so ``app.routes`` can import it. The document, its endpoint and its CLI command read the
route inventory, which reads ``app.routes``: import them by module (``app.openapi.document``,
``app.openapi.endpoint``, ``app.openapi.cli``), never from here, or the imports go round in a circle.
"""

from __future__ import annotations

from app.openapi.schemas import BODY_METHODS, RouteSchema, apply_schema, declare_schema, read_route_schema, schema_of
from app.openapi.settings import OpenApiSettings, read_openapi_settings
from app.openapi.validation import INVALID_BODY, BodyNotJson, BodyRequired

__all__ = [
    "BODY_METHODS", "INVALID_BODY", "BodyNotJson", "BodyRequired", "OpenApiSettings", "RouteSchema", "apply_schema",
    "declare_schema", "read_openapi_settings", "read_route_schema", "schema_of",
]
