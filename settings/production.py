"""Production: JSON logs at INFO; upstreams and routes come from the deployment's config file."""

from __future__ import annotations

from settings.base import Base


class Production(Base):
    """The base defaults, unchanged: a deployment brings its own file through GATEWAY_CONFIG."""
