"""Entry point of `python -m examples.demo`: patch the stdlib for gevent, then run the demo backends."""

from __future__ import annotations

if __name__ == "__main__":
    # Patching must happen before anything else imports socket, ssl or threading; that is why it
    # lives here and not in the app modules, which stay importable (and testable) unpatched.
    from gevent import monkey

    monkey.patch_all()

    import sys

    from examples.demo.server import main

    sys.exit(main())
