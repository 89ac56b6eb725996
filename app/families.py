"""The code route families a deployment serves: ``[gateway] blueprints``, imported by name at start.

Like Django's INSTALLED_APPS: a team ships a module with a Blueprint, and one line of the
deployment's config serves it. Nothing here is imported unless the config names it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint

from app.config import ConfigError, Section

__all__ = ["GatewaySettings", "load_blueprints", "read_gateway_settings"]

# "package.module:attribute", as gunicorn names an app: dotted identifiers, one colon.
_REFERENCE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class GatewaySettings:
    """The [gateway] section: which code blueprints are served."""

    blueprints: tuple[str, ...]  # "module:attribute" references, registered in this order


def read_gateway_settings(config: Mapping[str, Any]) -> GatewaySettings:
    """Read and check the [gateway] section (the references' shape; importing is ``load_blueprints``)."""
    section = Section("gateway", config["GATEWAY"])
    references = section.strings("blueprints")
    for index, reference in enumerate(references):
        if not _REFERENCE.fullmatch(reference):
            raise ConfigError(f"gateway.blueprints[{index}]", reference,
                              'a "module:attribute" reference, e.g. "blueprints.users:bp"')
        if reference in references[:index]:
            raise ConfigError(f"gateway.blueprints[{index}]", reference, "each blueprint once")
    section.done()
    return GatewaySettings(blueprints=references)


def load_blueprints(settings: GatewaySettings) -> tuple[Blueprint, ...]:
    """Import each named blueprint; a missing module or attribute, or one that is no Blueprint, names the key."""
    found = []
    for index, reference in enumerate(settings.blueprints):
        key = f"gateway.blueprints[{index}]"
        module_name, _, attribute = reference.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise ConfigError(key, reference, f"an importable module ({error})") from None
        blueprint = getattr(module, attribute, None)
        if not isinstance(blueprint, Blueprint):
            raise ConfigError(key, reference, f"a flask.Blueprint named {attribute} in {module_name}, "
                              f"not {type(blueprint).__name__}")
        found.append(blueprint)
    return tuple(found)
