"""Testing: what each test overrides starts from nothing but safe defaults."""

from __future__ import annotations

from typing import Any

from settings.base import Base


class Testing(Base):
    """Flask's testing mode; quiet logs unless a test asks for them."""

    TESTING = True
    LOG: dict[str, Any] = {"level": "WARNING", "format": "json"}
