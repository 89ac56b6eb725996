"""Gunicorn settings for the gateway, from GATEWAY_* environment variables.

Standard library only: this file runs in the master, before gevent patches the workers,
so it must not import the app, Flask or requests.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        sys.exit(f"frontdesk: configuration error: {name} = {raw!r}: expected a whole number >= {minimum}")
    return value


# --- Where and how many -------------------------------------------------------------
bind = [os.environ.get("GATEWAY_BIND", "127.0.0.1:8080")]
wsgi_app = "wsgi:app"
worker_class = "gevent"
# One worker per core: gevent gives each worker its concurrency.
workers = _env_int("GATEWAY_WORKERS", os.cpu_count() or 1)
# Simultaneous client connections per worker; above max_in_flight of any upstream so the
# gateway, not the accept queue, decides when to shed load.
worker_connections = _env_int("GATEWAY_WORKER_CONNECTIONS", 4096)
backlog = _env_int("GATEWAY_BACKLOG", 2048)

# --- Timing -----------------------------------------------------------------------------
# Longer than the usual load balancer idle timeout (60 s), so the balancer closes first and
# never sends a request on a connection the gateway is closing.
keepalive = _env_int("GATEWAY_KEEPALIVE", 75)
# Drain in-flight requests this long on SIGTERM before workers are killed.
graceful_timeout = _env_int("GATEWAY_GRACEFUL_TIMEOUT", 30)
# Only detects a worker whose event loop is blocked; request deadlines are the upstreams' own.
timeout = _env_int("GATEWAY_WORKER_TIMEOUT", 30)

# --- Limits on what a client may send (gunicorn answers 414 and 431 itself) ---------------
limit_request_line = 8190  # URL plus method: long query strings are common behind a gateway
limit_request_fields = 100
limit_request_field_size = 16384  # a large JWT fits

# gunicorn writes its own "Server: gunicorn" on every answer; the app cannot remove it. Its name
# is read from this module constant for each response, so the gateway's pseudonym replaces it
# (gunicorn itself, not the app: the master stays free of Flask/requests; docs/edge.md).
import gunicorn.http.wsgi  # noqa: E402

gunicorn.http.wsgi.SERVER = "frontdesk"

# --- Logging: the app writes the access log itself (one JSON line per request) ------------
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GATEWAY_SERVER_LOG_LEVEL", "warning")

# A control socket at a shared default path makes two instances on one host collide; only
# create one where the operator names its path.
control_socket = os.environ.get("GATEWAY_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

preload_app = False  # see wsgi.py


def on_starting(server: Any) -> None:
    """Check the configuration in a separate process before any worker starts.

    A bad setting then stops the start with one line and no half-started gateway; the
    check runs outside the master so the master never imports the app.
    """
    if os.environ.get("GATEWAY_SKIP_PREFLIGHT") != "1":
        # Without the metrics directory: a check must not leave files among the workers' own.
        env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
        result = subprocess.run([sys.executable, "-m", "app", "check"], capture_output=True, text=True, env=env)
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            sys.exit(result.returncode or 1)
    _prepare_metrics_dir()


# --- Metrics: prometheus-client's multiprocess mode -----------------------------------------
# Each worker writes its metrics to files in one directory and a scrape sums them, so the
# counts survive a worker's restart. The directory is this instance's alone and starts empty:
# files left by an earlier run would be counted again.
_CREATED_METRICS_DIR: list[str] = []


def _prepare_metrics_dir() -> None:
    path = os.environ.get("GATEWAY_METRICS_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            # Only prometheus-client's own files: the operator may have pointed us at a shared place.
            if re.fullmatch(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db", os.path.basename(stale)):
                os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="frontdesk-metrics-")
        _CREATED_METRICS_DIR.append(path)
    # Inherited by every worker forked from now on, before any of them imports prometheus_client.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: drop its live gauges (in-flight calls), keep its counters.

    What prometheus_client.multiprocess.mark_process_dead does, without importing it into the
    master: the files of gauges in the live* modes are removed.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        for live in glob.glob(os.path.join(path, f"gauge_live*_{worker.pid}.db")):
            os.remove(live)


def on_exit(server: Any) -> None:
    """Remove the metrics directory this instance created (an operator-named one is kept)."""
    for path in _CREATED_METRICS_DIR:
        shutil.rmtree(path, ignore_errors=True)
