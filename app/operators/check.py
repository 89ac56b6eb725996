"""The configuration check: build the gateway once, serve nothing, and list every problem found.

One implementation behind ``flask gateway check``, ``python -m app check`` (gunicorn's preflight)
and ``make check-config``: the same ``create_app`` the workers run, given a collecting
``Problems`` so it goes on past each bad setting instead of stopping at the first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from flask import Blueprint

from app.config import ConfigError, Problems
from app.proxy import upstreams
from app.ratelimit import limiter

__all__ = ["ERROR_PREFIX", "REFUSED", "WARNING_PREFIX", "CheckReport", "check_config", "run_check"]

#: The prefix of each problem's line, as a refused start writes it (gunicorn's log shows these).
ERROR_PREFIX = "frontdesk: configuration error:"
#: The prefix of a warning's line: the gateway starts, but an operator should look.
WARNING_PREFIX = "frontdesk: configuration warning:"
#: The exit status of a refused configuration, the same as a worker's refused start (gunicorn's
#: WORKER_BOOT_ERROR), so the master exits with it either way; 1 stays a crash, 2 a usage error.
REFUSED = 3


@dataclass(frozen=True)
class CheckReport:
    """What a check found: the environment, every problem in the order met, the rules served."""

    env: str | None  # None: the check stopped before an environment was settled
    problems: tuple[ConfigError, ...]
    rules: int
    warnings: tuple[str, ...] = ()  # what would start but deserves a look (printed once per start)

    @property
    def ok(self) -> bool:
        """Whether the gateway would start with this configuration."""
        return not self.problems


def check_config(env: str | None = None, *, config_file: str | None = None,
                 blueprints: Iterable[Blueprint] | None = None, **overrides: Any) -> CheckReport:
    """Build the gateway as a worker would, collecting every problem; arguments as for ``create_app``."""
    from app.factory import create_app  # here, not at the top: the factory imports the CLI, which imports this module

    problems = Problems(collect=True)
    try:
        app = create_app(env, config_file=config_file, blueprints=blueprints, problems=problems, **overrides)
    except ConfigError as error:  # one the check cannot go past: GATEWAY_ENV, the file itself
        problems.report(error)
        return CheckReport(None, tuple(problems.errors), 0)
    upstreams.stop(app)
    warning = None if problems.errors else limiter.per_worker_warning(app)
    return CheckReport(app.config["GATEWAY_ENV"], tuple(problems.errors), len(list(app.url_map.iter_rules())),
                       (warning,) if warning else ())


def run_check(config_file: str | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check the configuration the environment names; print each problem or a summary; the exit code.

    Problems go to ``err``, one line each starting with its key; 0 means the gateway would start,
    ``REFUSED`` that it would not.
    """
    out, err = out or sys.stdout, err or sys.stderr
    report = check_config(config_file=config_file)
    for problem in report.problems:
        print(f"{ERROR_PREFIX} {problem}", file=err)
    if not report.ok:
        count = len(report.problems)
        print(f"frontdesk: {count} configuration problem{'s' if count > 1 else ''}; the gateway would not start",
              file=err, flush=True)
        return REFUSED
    for warning in report.warnings:
        print(f"{WARNING_PREFIX} {warning}", file=err)
    print(f"frontdesk: configuration ok ({report.env}, {report.rules} rules)", file=out, flush=True)
    return 0
