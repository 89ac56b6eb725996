"""Settings classes, one per environment, by the name ``GATEWAY_ENV`` uses."""

from __future__ import annotations

from settings.base import Base
from settings.development import Development
from settings.production import Production
from settings.testing import Testing

__all__ = ["DEFAULT_ENV", "ENVIRONMENTS", "Base"]

#: Every environment by its name.
ENVIRONMENTS: dict[str, type[Base]] = {
    "development": Development,
    "production": Production,
    "testing": Testing,
}

#: A deployment that forgets GATEWAY_ENV gets the strict settings; ``make run`` asks for development.
DEFAULT_ENV = "production"
