"""Mint a demo token: ``python -m examples.demo.token --scope orders:read`` prints one bearer token."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import requests

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Ask the running demo IdP for a token and print it."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo.token", description=__doc__)
    parser.add_argument("--scope", action="append", default=[], help="a scope to grant (repeat for more)")
    parser.add_argument("--sub", default="demo-user", help="the subject (default: %(default)s)")
    parser.add_argument("--alg", default="RS256", choices=["RS256", "ES256"], help="default: %(default)s")
    parser.add_argument("--expires-in", type=int, default=3600, help="seconds (default: %(default)s)")
    parser.add_argument("--idp", default="http://127.0.0.1:9401", help="the demo IdP (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        answer = requests.post(args.idp + "/token", json={
            "scope": " ".join(args.scope), "sub": args.sub, "alg": args.alg, "expires_in": args.expires_in,
        }, timeout=5)
    except requests.RequestException as error:
        print(f"cannot reach the demo IdP at {args.idp} (is `make run` running?): {error}", file=sys.stderr)
        return 1
    if answer.status_code != 200:
        print(f"the demo IdP answered {answer.status_code}: {answer.text}", file=sys.stderr)
        return 1
    print(answer.json()["access_token"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
