"""The document's endpoint: built on first request from the finished app, then served from memory."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from flask import Blueprint, Flask, Response, current_app, request

from app.auth import public
from app.operators.openapi.document import build_document
from app.openapi.settings import OpenApiSettings, read_openapi_settings

__all__ = ["EXTENSION", "OpenApi", "OpenApiRuntime", "openapi"]

#: Where the OpenAPI runtime lives in ``app.extensions``.
EXTENSION = "frontdesk.openapi"


@dataclass
class OpenApiRuntime:
    """One app's settings and, once asked for, its rendered document (routes never change after start)."""

    settings: OpenApiSettings
    body: bytes | None = field(default=None, repr=False)
    etag: str = ""

    def rendered(self, app: Flask) -> tuple[bytes, str]:
        """The document as JSON bytes and its entity tag, built once per app."""
        if self.body is None:
            # Two first requests racing in one worker both build the same bytes: harmless, so no lock.
            body = json.dumps(build_document(app, self.settings), indent=2).encode()
            self.etag = hashlib.sha256(body).hexdigest()[:32]
            self.body = body
        return self.body, self.etag


class OpenApi:
    """The app-less extension: ``init_app`` reads [openapi]; ``blueprints`` gives the endpoint when enabled."""

    def init_app(self, app: Flask) -> None:
        """Read and check the [openapi] section."""
        app.extensions[EXTENSION] = OpenApiRuntime(read_openapi_settings(app.config))

    def runtime(self, app: Flask | None = None) -> OpenApiRuntime:
        """The app's OpenAPI state."""
        runtime: OpenApiRuntime = (app or current_app).extensions[EXTENSION]
        return runtime

    def blueprints(self, app: Flask) -> tuple[Blueprint, ...]:
        """The document's endpoint (public, GET), unless [openapi] enabled = false."""
        settings = self.runtime(app).settings
        if not settings.enabled:
            return ()
        blueprint = Blueprint("openapi", __name__)
        blueprint.add_url_rule(settings.path, endpoint="document", view_func=_document, methods=["GET"])
        return (blueprint,)


#: The one instance ``create_app`` initialises.
openapi = OpenApi()


@public
def _document() -> Response:
    """The OpenAPI 3.1 document of this gateway."""
    body, etag = openapi.runtime().rendered(current_app)
    response = Response(body, mimetype="application/json")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "no-cache"  # revalidate: a reload may change the routes
    response.make_conditional(request)  # 304 for a matching If-None-Match; changes the response in place
    return response
