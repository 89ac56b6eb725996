"""Readiness while the instance stops, and the worker's shared page, without gunicorn."""

from __future__ import annotations

import subprocess
import sys

from flask.testing import FlaskClient

import worker
from app.environ import DRAINING_ENVIRON as DRAINING_ENVIRON_KEY


def test_the_app_reads_the_key_the_worker_sets() -> None:
    assert worker.DRAINING_ENVIRON_KEY == DRAINING_ENVIRON_KEY


def test_readiness_is_503_while_the_instance_stops(client: FlaskClient) -> None:
    assert client.get("/readyz", environ_base={DRAINING_ENVIRON_KEY: False}).status_code == 200
    response = client.get("/readyz", environ_base={DRAINING_ENVIRON_KEY: True})
    assert response.status_code == 503
    assert response.json == {"status": "not ready", "draining": True}
    assert client.get("/livez", environ_base={DRAINING_ENVIRON_KEY: True}).status_code == 200  # still live


def test_shared_page_numbers_only_grow() -> None:
    shared = worker._Shared()
    assert (shared.spawned, shared.booted, shared.stopping) == (0, 0, False)
    shared.note_spawned(3)
    shared.note_spawned(2)  # a late note from an older fork does not go back
    shared.note_booted(2)
    assert (shared.spawned, shared.booted, shared.stopping) == (3, 2, False)
    shared.note_stopping()
    assert shared.stopping


def test_settle_heap_freezes_what_start_up_built() -> None:
    # In a process of its own: freezing is for the rest of the process's life.
    script = "import gc, worker; worker.settle_heap(); print(gc.get_freeze_count())"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(result.stdout) > 10000  # gunicorn's and gevent's modules at least
