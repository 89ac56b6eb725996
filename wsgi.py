"""The WSGI entry point gunicorn loads in each worker: ``gunicorn -c gunicorn.conf.py wsgi:app``.

The app is built per worker, after the gevent worker has monkey-patched it, which is why
``preload_app`` stays off: a Session or lock made in the unpatched master would block every
greenlet of the workers forked from it.
"""

from __future__ import annotations

from app import create_app_or_exit

app = create_app_or_exit()
