"""The WSGI entry point gunicorn loads in each worker: ``gunicorn -c gunicorn.conf.py wsgi:app``.

The app is built per worker, after the gevent worker has monkey-patched it, which is why
``preload_app`` stays off: a Session or lock made in the unpatched master would block every
greenlet of the workers forked from it.

Importing this module builds the app, and a bad setting exits with one line. ``flask --app wsgi
gateway check`` still works on a broken configuration because Flask finds the ``gateway`` group
through its ``flask.commands`` entry point (setup.cfg) without importing this module; only the
commands that need the built app (``gateway routes``) import it.
"""

from __future__ import annotations

from app import create_app_or_exit

app = create_app_or_exit()
