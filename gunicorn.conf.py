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
# gunicorn's gevent worker, plus a drain: readiness says 503 and idle keep-alive connections are
# closed once a worker is told to stop (worker.py; it imports no more than gunicorn and gevent).
worker_class = "worker.DrainingWorker"
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

# --- Whom gunicorn believes: nobody -------------------------------------------------------
# The gateway's [edge] trusted_proxies is the one trust setting (ProxyFix, app/edge/wsgi.py). gunicorn's
# own defaults believe a loopback (or any Unix-socket) peer's X-Forwarded-Proto and SCRIPT_NAME
# headers; a client on the same host, or a sidecar, could then change the scheme and the routing.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
forwarder_headers = ""

# gunicorn's own "Server: gunicorn" is renamed by worker.py, with its other uses of gunicorn's
# internals (app/internals.py; docs/edge.md).

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
    """Check the configuration in a separate process before any worker starts, and before each reload.

    A bad setting then stops the start with one line and no half-started gateway; the
    check runs outside the master so the master never imports the app.
    """
    from worker import install_master_hooks  # already loaded by gunicorn as the worker class

    install_master_hooks(server)
    if os.environ.get("GATEWAY_SKIP_PREFLIGHT") != "1":
        code, problem = _check_app()
        sys.stderr.write(problem)  # the problems, or the warnings of a good configuration: once per start
        if code != 0:
            sys.exit(code)
        _check_before_reload(server)
    _prepare_metrics_dir()


# --- Reload (SIGHUP): new workers read the settings and GATEWAY_CONFIG again -----------------
# A worker that cannot build the app exits 3 and gunicorn then halts the whole gateway, so a bad
# file must be refused before gunicorn replaces anything. The arbiter's on_reload hook comes too
# late for that: gunicorn has already re-read this file, and skipping the spawn from there leaves
# the master waiting graceful_timeout for old workers that never go (docs/decisions.md).
# Workers read a copy of the file as it was checked, never the file itself: an edit made while
# new workers boot, or before a worker is restarted, cannot reach a worker unchecked.
_CHECK_TIMEOUT = 60  # seconds; the check builds the app once and serves nothing
_SOURCE = "FRONTDESK_CONFIG_SOURCE"  # the operator's GATEWAY_CONFIG, kept while workers read the copy
_SNAPSHOTS = "FRONTDESK_CONFIG_SNAPSHOTS"  # this instance's directory of checked copies


def _check_app() -> tuple[int, str]:
    """Check settings and a copy of the config file; if good, the next workers read that copy.

    ``python -m app check`` on the environment the next workers get: its exit code and stderr.
    """
    source = os.environ.setdefault(_SOURCE, os.environ.get("GATEWAY_CONFIG", ""))
    # Without the metrics directory: a check must not leave files among the workers' own.
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    snapshot = _snapshot(source) if source else None
    if snapshot:
        env["GATEWAY_CONFIG"] = snapshot
    try:
        result = subprocess.run([sys.executable, "-m", "app", "check"], capture_output=True, text=True, env=env,
                                timeout=_CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        result = subprocess.CompletedProcess([], 1, "", f"frontdesk: configuration error: the check did not "
                                             f"finish within {_CHECK_TIMEOUT} s\n")
    if snapshot and result.returncode != 0:
        os.remove(snapshot)
        return result.returncode, result.stderr.replace(snapshot, source)
    if snapshot:
        previous = os.environ.get("GATEWAY_CONFIG", "")
        os.environ["GATEWAY_CONFIG"] = snapshot
        if previous.startswith(os.environ[_SNAPSHOTS]):
            os.remove(previous)  # the old workers have read theirs at boot
    return result.returncode, result.stderr


def _snapshot(source: str) -> str | None:
    """A private copy of the config file, or None when it cannot be read (the check then says why)."""
    try:
        with open(source, "rb") as file:
            content = file.read()
    except OSError:
        return None
    directory = os.environ.get(_SNAPSHOTS) or tempfile.mkdtemp(prefix=_SNAPSHOT_PREFIX)
    os.environ[_SNAPSHOTS] = directory
    descriptor, path = tempfile.mkstemp(suffix=".toml", dir=directory)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    return path


def _check_server_settings() -> tuple[int, str]:
    """Run this file as gunicorn will on reload (an edit may have broken it): exit code and last error line."""
    try:
        result = subprocess.run([sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv[1])", __file__],
                                capture_output=True, text=True, timeout=_CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return 1, f"{__file__} did not finish within {_CHECK_TIMEOUT} s"
    lines = result.stderr.strip().splitlines()
    return result.returncode, lines[-1] if lines else ""


def _check_before_reload(server: Any) -> None:
    """Make SIGHUP check first and refuse a bad configuration, leaving the running workers as they are."""
    reload = server.reload

    def checked_reload() -> None:
        code, problem = _check_server_settings()
        if code == 0:
            code, problem = _check_app()
        if code != 0:
            problem = " ".join(problem.split()).removeprefix("frontdesk: ") or f"the check exited {code}"
            server.log.error("frontdesk: reload refused, the running workers keep serving: %s", problem)
            return
        server.log.info("frontdesk: configuration checked, reloading")
        reload()

    # Arbiter.handle_hup calls self.reload(): this instance attribute comes first (gunicorn 27.0.1;
    # tests/test_e2e_reload.py fails if that changes). It survives the reload's re-read of this file.
    server.reload = checked_reload


# --- Metrics: prometheus-client's multiprocess mode -----------------------------------------
# Each worker writes its metrics to files in one directory and a scrape sums them, so the
# counts survive a worker's restart. The directory is this instance's alone and starts empty:
# files left by an earlier run would be counted again. Module state would not survive a reload
# (gunicorn runs this file again on SIGHUP), so the directory's name says it is ours.
_CREATED_PREFIX = "frontdesk-metrics-"
_SNAPSHOT_PREFIX = "frontdesk-config-"


def _prepare_metrics_dir() -> None:
    path = os.environ.get("GATEWAY_METRICS_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            # Only prometheus-client's own files: the operator may have pointed us at a shared place.
            if re.fullmatch(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db", os.path.basename(stale)):
                os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix=_CREATED_PREFIX)
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
    """Remove the metrics directory this instance created (an operator-named one is kept) and the config copies."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if _ours(path, _CREATED_PREFIX) and not os.environ.get("GATEWAY_METRICS_DIR"):
        shutil.rmtree(path, ignore_errors=True)
    path = os.environ.get(_SNAPSHOTS, "")
    if _ours(path, _SNAPSHOT_PREFIX):
        shutil.rmtree(path, ignore_errors=True)


def _ours(path: str, prefix: str) -> bool:
    """Whether path is a directory this file made with tempfile.mkdtemp(prefix=prefix)."""
    return os.path.dirname(path) == tempfile.gettempdir() and os.path.basename(path).startswith(prefix)
