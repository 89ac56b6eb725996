"""Demo users service: an in-memory CRUD API that tags every answer with the instance that served it."""

from __future__ import annotations

import copy
import datetime
import itertools

from flask import Flask, Response, request

from examples.demo.common import (
    JSONObject,
    install_common,
    json_object_body,
    json_response,
    missing_fields,
    problem,
)

SEED_USERS: tuple[JSONObject, ...] = (
    {
        "id": "u-1001",
        "name": "Amara Okafor",
        "email": "amara.okafor@example.com",
        "country": "NG",
        "created_at": "2023-02-14",
    },
    {
        "id": "u-1002",
        "name": "Lukas Becker",
        "email": "lukas.becker@example.de",
        "country": "DE",
        "created_at": "2023-06-03",
    },
    {
        "id": "u-1003",
        "name": "Sofia Marino",
        "email": "sofia.marino@example.it",
        "country": "IT",
        "created_at": "2023-11-21",
    },
    {
        "id": "u-1004",
        "name": "Hiroshi Tanaka",
        "email": "hiroshi.tanaka@example.jp",
        "country": "JP",
        "created_at": "2024-01-09",
    },
    {
        "id": "u-1005",
        "name": "Emily Clarke",
        "email": "emily.clarke@example.co.uk",
        "country": "GB",
        "created_at": "2024-04-30",
    },
)

# Ids carry on after the seed data so new users never collide with seeded ones.
FIRST_NEW_ID = 1006


def _read_user_fields() -> JSONObject | Response:
    """Return the writable user fields from the request body, or a 422 problem if it is unusable."""
    body = json_object_body()
    if body is None:
        return problem(422, "invalid user", "the body must be a JSON object")
    missing = missing_fields(body, "name", "email")
    if missing:
        return problem(422, "invalid user", "missing or empty fields: " + ", ".join(missing))
    if "@" not in body["email"]:
        return problem(422, "invalid user", "email must contain '@'")
    country = body.get("country")
    return {
        "name": body["name"].strip(),
        "email": body["email"].strip(),
        # Countries are ISO codes; upper-casing keeps `?country=` filtering predictable.
        "country": country.strip().upper() if isinstance(country, str) and country.strip() else None,
    }


def create_users_app(instance: str) -> Flask:
    """Build one users service instance; each instance keeps its own copy of the data."""
    app = Flask(f"demo-users-{instance}")
    served_by = f"users#{instance}"
    # Deep copy: instances must not share (and so mutate) the same seed dicts.
    users: dict[str, JSONObject] = {user["id"]: copy.deepcopy(user) for user in SEED_USERS}
    new_ids = itertools.count(FIRST_NEW_ID)

    install_common(app)

    @app.after_request
    def tag_instance(response: Response) -> Response:
        """Mark every answer, errors included, so round-robin is visible from the client."""
        response.headers["X-Served-By"] = served_by
        return response

    def single(user: JSONObject, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        """Answer one user, with the instance name in the body too."""
        return json_response({**user, "served_by": served_by}, status, headers)

    def not_found(user_id: str) -> Response:
        """Answer the problem for an unknown user id."""
        return problem(404, "user not found", f"no user with id {user_id!r}")

    @app.get("/users")
    def list_users() -> Response:
        """List users, optionally only those from `?country=`."""
        country = request.args.get("country", "").strip().upper()
        found = [user for user in users.values() if not country or user["country"] == country]
        return json_response({"users": found, "count": len(found)})

    @app.get("/users/<user_id>")
    def get_user(user_id: str) -> Response:
        """Answer one user by id."""
        user = users.get(user_id)
        return single(user) if user is not None else not_found(user_id)

    @app.post("/users")
    def create_user() -> Response:
        """Create a user from a JSON body with name and email (country optional)."""
        fields = _read_user_fields()
        if isinstance(fields, Response):
            return fields
        user_id = f"u-{next(new_ids)}"
        user = {
            "id": user_id,
            **fields,
            "created_at": datetime.date.today().isoformat(),
        }
        users[user_id] = user
        return single(user, 201, {"Location": f"/users/{user_id}"})

    @app.put("/users/<user_id>")
    def replace_user(user_id: str) -> Response:
        """Replace a user's name, email and country; id and created_at never change."""
        user = users.get(user_id)
        if user is None:
            return not_found(user_id)
        fields = _read_user_fields()
        if isinstance(fields, Response):
            return fields
        user.update(fields)
        return single(user)

    @app.delete("/users/<user_id>")
    def delete_user(user_id: str) -> Response:
        """Delete a user."""
        if users.pop(user_id, None) is None:
            return not_found(user_id)
        response = Response(status=204)
        # A 204 has no body, so a (default text/html) Content-Type would only mislead.
        del response.headers["Content-Type"]
        return response

    return app
