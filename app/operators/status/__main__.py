"""``python -m app.operators.status hash-password``: print the hash to put in GATEWAY_STATUS__PASSWORD_HASH."""

from __future__ import annotations

import getpass
import sys

from werkzeug.security import generate_password_hash


def main(argv: list[str]) -> int:
    """Ask for a password twice and print its werkzeug scrypt hash."""
    if argv != ["hash-password"]:
        print("usage: python -m app.operators.status hash-password", file=sys.stderr)
        return 2
    password = getpass.getpass("Status page password: ")
    if len(password) < 12:
        print("refused: use at least 12 characters", file=sys.stderr)
        return 1
    if getpass.getpass("Again: ") != password:
        print("refused: the two entries differ", file=sys.stderr)
        return 1
    print(generate_password_hash(password))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
