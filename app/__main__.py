"""``python -m app check [--config FILE]``: the configuration check without Flask's CLI (gunicorn's preflight).

The same check as ``flask gateway check`` (app/operators/check.py): 0 when the gateway would start,
3 with every problem on stderr, one line each, when it would not; 2 for a wrong command line.
"""

from __future__ import annotations

import sys

from app.operators.check import run_check

_USAGE = "usage: python -m app check [--config FILE]"


def main(argv: list[str]) -> int:
    """Validate the configuration the environment (or ``--config``) names; 0 when it would start."""
    if argv[:1] != ["check"] or len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--config"):
        print(_USAGE, file=sys.stderr)
        return 2
    return run_check(argv[2] if len(argv) == 3 else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
