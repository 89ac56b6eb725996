"""``flask gateway openapi``: the OpenAPI document of the configured app, written without serving."""

from __future__ import annotations

import json
from typing import IO

import click
from flask import current_app
from flask.cli import with_appcontext

from app.operators.openapi.document import build_document

__all__ = ["openapi_command"]


@click.command("openapi")
@click.option("--output", "-o", type=click.File("w"), default="-", show_default=True,
              help="File to write the document to (- for standard output).")
@click.option("--indent", type=click.IntRange(min=0), default=2, show_default=True,
              help="Spaces per indentation level (0: one line).")
@with_appcontext
def openapi_command(output: IO[str], indent: int) -> None:
    """Write the OpenAPI 3.1 document (JSON, which is also valid YAML 1.2) of the configured gateway."""
    document = build_document(current_app)
    output.write(json.dumps(document, indent=indent or None) + "\n")
