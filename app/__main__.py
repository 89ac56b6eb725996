"""``python -m app check``: build the gateway once from the environment, serve nothing."""

from __future__ import annotations

import sys

from app import create_app_or_exit


def main(argv: list[str]) -> int:
    """Validate the configuration the environment names; 0 when it would start."""
    if argv != ["check"]:
        print("usage: python -m app check", file=sys.stderr)
        return 2
    app = create_app_or_exit()
    print(f"frontdesk: configuration ok ({app.config['GATEWAY_ENV']}, {len(app.url_map._rules)} rules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
