"""The operators' status page: routes and policies, upstream targets, traffic per route, recent errors."""

from __future__ import annotations

from app.operators.status.page import build_status_blueprint
from app.operators.status.settings import StatusSettings, read_status_settings

__all__ = ["StatusSettings", "build_status_blueprint", "read_status_settings"]
