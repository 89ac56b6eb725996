"""The route families written in code, registered in this order after the declared routes.

Adding a family: one module here with a Blueprint, plus one line in BLUEPRINTS.
"""

from __future__ import annotations

from flask import Blueprint

from blueprints import mobile, users, web

__all__ = ["BLUEPRINTS"]

BLUEPRINTS: tuple[Blueprint, ...] = (
    users.bp,
    web.bp,
    mobile.bp,
)
