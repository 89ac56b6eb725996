"""Demo catalog service: gzip, ETag/304, Cache-Control and two cookies, to exercise the gateway's proxying."""

from __future__ import annotations

import gzip
import hashlib
import secrets

from flask import Flask, Response, request

from examples.demo.common import JSONObject, install_common, json_response, problem

PRODUCTS: tuple[JSONObject, ...] = (
    {
        "sku": "BK-1042",
        "title": "Designing Data-Intensive Applications (paperback)",
        "price": 34.9,
        "currency": "EUR",
        "tags": ["books", "engineering"],
    },
    {
        "sku": "MG-0007",
        "title": "Enamel camp mug, 350 ml",
        "price": 12.5,
        "currency": "EUR",
        "tags": ["kitchen", "outdoor"],
    },
    {
        "sku": "HP-2200",
        "title": "Noise-cancelling over-ear headphones",
        "price": 129.0,
        "currency": "EUR",
        "tags": ["audio", "electronics"],
    },
    {
        "sku": "KB-3300",
        "title": "Mechanical keyboard, 75% layout, brown switches",
        "price": 89.99,
        "currency": "EUR",
        "tags": ["electronics", "office"],
    },
    {
        "sku": "LP-0450",
        "title": "Aluminium laptop stand",
        "price": 39.0,
        "currency": "EUR",
        "tags": ["office"],
    },
)

CACHE_CONTROL = "public, max-age=30"
# Only the product views are cacheable: a cached /health would hide an outage for 30 seconds.
CACHEABLE_ENDPOINTS = frozenset({"list_products", "get_product"})


def _gzip_accepted() -> bool:
    """Tell whether the request's Accept-Encoding allows gzip (honouring q=0 and `*`)."""
    return request.accept_encodings["gzip"] > 0


def _plain_etag(body: bytes) -> str:
    """Return the unquoted strong ETag value for a plain (uncompressed) body."""
    return hashlib.sha256(body).hexdigest()[:32]


def _finish(response: Response) -> Response:
    """Add caching headers, answer 304 on a matching If-None-Match, gzip, and set the cookies."""
    # The demo cookies go on every answer, errors and 304s included, so the gateway's
    # handling of several Set-Cookie headers shows up wherever you look.
    response.set_cookie("catalog_session", secrets.token_urlsafe(16), path="/", httponly=True)
    response.set_cookie("catalog_ab", "B", path="/")
    if response.direct_passthrough or response.is_streamed:
        return response
    # The representation depends on Accept-Encoding even when this answer happens to be plain.
    response.vary.add("Accept-Encoding")
    plain = response.get_data()
    if (
        request.method in ("GET", "HEAD")
        and response.status_code == 200
        and request.endpoint in CACHEABLE_ENDPOINTS
    ):
        # Hash the plain body so the tag is the same whichever encoding the client asked for.
        etag = _plain_etag(plain)
        response.set_etag(etag)
        response.headers["Cache-Control"] = CACHE_CONTROL
        # If-None-Match uses weak comparison (RFC 9110 13.1.2); contains_weak also honours `*`.
        if request.if_none_match.contains_weak(etag):
            response.status_code = 304
            response.set_data(b"")
            return response
    if plain and _gzip_accepted():
        # mtime=0 makes the compressed bytes reproducible, which keeps demos and tests diffable.
        response.set_data(gzip.compress(plain, mtime=0))
        response.headers["Content-Encoding"] = "gzip"
    return response


def create_catalog_app() -> Flask:
    """Build the catalog service (read-only product data)."""
    app = Flask("demo-catalog")
    products = {product["sku"]: product for product in PRODUCTS}

    install_common(app)
    app.after_request(_finish)

    @app.get("/catalog/products")
    def list_products() -> Response:
        """List products, optionally only those tagged `?tag=`."""
        tag = request.args.get("tag", "").strip().lower()
        found = [product for product in products.values() if not tag or tag in product["tags"]]
        return json_response({"products": found, "count": len(found)})

    @app.get("/catalog/products/<sku>")
    def get_product(sku: str) -> Response:
        """Answer one product by SKU."""
        product = products.get(sku.upper())
        if product is None:
            return problem(404, "product not found", f"no product with sku {sku!r}")
        return json_response(product)

    return app
