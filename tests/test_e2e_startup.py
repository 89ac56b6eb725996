"""Start-up and shutdown under real gunicorn: a bad setting stops the start with one line; SIGTERM stops cleanly."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import gevent
import pytest
import requests

from tests.fakes.backend import Backend
from tests.gateway import Gateway, echo_toml

pytestmark = pytest.mark.e2e

ERROR_PREFIX = "frontdesk: configuration error:"
# Nothing listens here and nothing connects at start-up: configuration is checked without traffic.
NOWHERE = "http://127.0.0.1:9"


# (what is wrong, config text, extra environment, the key the error line must name)
BAD_STARTS: list[tuple[str, str, dict[str, str], str]] = [
    ("timeout not a number", echo_toml(NOWHERE, upstream='connect_timeout = "soon"'), {},
     "upstreams.echo.connect_timeout"),
    ("unknown upstream key", echo_toml(NOWHERE, upstream="conect_timeout = 1"), {},
     "upstreams.echo.conect_timeout"),
    ("unknown route key", echo_toml(NOWHERE, route='upstream_pth = "/x"'), {}, "routes[0].upstream_pth"),
    ("unknown section", echo_toml(NOWHERE) + "[upstream_default]\ntimeout = 1\n", {}, "[upstream_default]"),
    ("route to unknown upstream", echo_toml(NOWHERE) + '[[routes]]\npath = "/x"\nupstream = "nope"\n', {},
     "routes[1].upstream"),
    # A family named in [gateway] blueprints needs its upstream; the preflight lists every problem, one line
    # each, so everything else the users family needs (an auth scheme) is given.
    ("blueprint upstream missing", f'[upstreams.echo]\ntargets = ["{NOWHERE}"]\n[gateway]\n'
     f'blueprints = ["blueprints.users:bp"]\n[auth.api_keys.consumers.ci]\nkey_sha256 = "{"0" * 64}"\n',
     {"GATEWAY_ENV": "production"}, "upstreams.users"),
    ("blueprint not importable", echo_toml(NOWHERE) + '[gateway]\nblueprints = ["blueprints.nope:bp"]\n', {},
     "gateway.blueprints[0]"),
    ("target with a path", echo_toml(NOWHERE + "/api"), {}, "upstreams.echo.targets"),
    ("invalid TOML", echo_toml(NOWHERE) + "timeout = = 1\n", {}, "GATEWAY_CONFIG"),
    ("missing config file", echo_toml(NOWHERE), {"GATEWAY_CONFIG": "/nonexistent/frontdesk.toml"},
     "GATEWAY_CONFIG"),
    ("bad environment override", echo_toml(NOWHERE), {"GATEWAY_UPSTREAMS__ECHO__TIMEOUT": "soon"},
     "upstreams.echo.timeout"),
    ("unknown GATEWAY_ENV", echo_toml(NOWHERE), {"GATEWAY_ENV": "staging"}, "GATEWAY_ENV"),
    ("workers not a number", echo_toml(NOWHERE), {"GATEWAY_WORKERS": "abc"}, "GATEWAY_WORKERS"),
    ("zero workers", echo_toml(NOWHERE), {"GATEWAY_WORKERS": "0"}, "GATEWAY_WORKERS"),
]


@pytest.mark.parametrize(("config", "env", "key"), [case[1:] for case in BAD_STARTS],
                         ids=[case[0] for case in BAD_STARTS])
def test_bad_configuration_stops_the_start_with_one_line(start_gateway: Callable[..., Gateway], config: str,
                                                         env: dict[str, str], key: str) -> None:
    gateway = start_gateway(config, env=env, wait=False)
    try:
        code = gateway.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the gateway started despite the bad setting:\n{gateway.log()}") from None
    output = gateway.log()
    assert code != 0, output
    errors = [line for line in output.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, output
    assert key in errors[0], output
    assert "Traceback" not in output, output
    # Nothing was left serving on the socket.
    with pytest.raises(requests.ConnectionError):
        requests.get(gateway.url + "/livez", timeout=2)


def fetch(gateway: Gateway, path: str) -> tuple[int, http.client.HTTPMessage, bytes]:
    """GET ``path`` on a connection of its own, closed before returning (an idle one would delay stop)."""
    host, port = urlsplit(gateway.url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.msg, response.read()
    finally:
        connection.close()


def test_good_configuration_serves_health_and_stops_on_sigterm(start_gateway: Callable[..., Gateway],
                                                               backend: Backend) -> None:
    gateway = start_gateway(echo_toml(backend.url))
    workers = gateway.worker_pids()
    assert len(workers) == 2
    for path, state in (("/livez", "live"), ("/readyz", "ready")):
        status, headers, body = fetch(gateway, path)
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"status": state}
        assert headers["X-Request-ID"]
    assert backend.received == []  # health is answered by the gateway itself

    started = time.monotonic()
    gateway.stop()
    assert gateway.process is not None
    assert gateway.process.returncode == 0, gateway.log()  # exited by itself, not killed
    assert time.monotonic() - started < 10
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the master"
    assert "Traceback" not in gateway.log()
    with pytest.raises(ConnectionError):
        fetch(gateway, "/livez")


def test_sigterm_lets_a_request_in_flight_finish(start_gateway: Callable[..., Gateway], backend: Backend) -> None:
    gateway = start_gateway(echo_toml(backend.url))
    assert gateway.process is not None
    slow = gevent.spawn(fetch, gateway, "/_/slow/1.5")
    backend.wait_for(1)  # the request has reached the upstream: it is in flight
    gateway.stop()
    status, _, body = slow.get(timeout=10)
    assert status == 200
    assert json.loads(body)["target"] == "/_/slow/1.5"
    assert gateway.process.returncode == 0, gateway.log()


def test_sigterm_is_not_held_up_by_an_idle_keep_alive_connection(start_gateway: Callable[..., Gateway],
                                                                 backend: Backend) -> None:
    """Was a bug: the idle connection held the worker for the whole graceful_timeout (30 s); worker.py closes it."""
    gateway = start_gateway(echo_toml(backend.url), workers=1)
    assert gateway.process is not None
    host, port = urlsplit(gateway.url).netloc.split(":")
    idle = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        idle.request("GET", "/livez")
        response = idle.getresponse()
        response.read()
        assert response.status == 200  # the connection is now idle, kept alive by the client (a load balancer)
        workers = gateway.worker_pids()
        gateway.process.send_signal(signal.SIGTERM)
        try:
            code = gateway.wait(5)
        except subprocess.TimeoutExpired:
            # Ours to end, by pid: do not leave it to the fixture's 15 s wait.
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            gateway.process.kill()
            gateway.process.wait(5)
            raise AssertionError("the gateway was still running 5 s after SIGTERM") from None
        assert code == 0, gateway.log()
    finally:
        idle.close()


def test_configuration_check_command_agrees(tmp_path: Path) -> None:
    """``python -m app check`` (what the master runs before forking) reports a good file as ok."""
    config = tmp_path / "good.toml"
    config.write_text(echo_toml(NOWHERE))
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_ENV": "testing", "GATEWAY_CONFIG": str(config)}
    result = subprocess.run([sys.executable, "-m", "app", "check"], cwd=Path(__file__).resolve().parent.parent,
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("frontdesk: configuration ok (testing"), result.stdout
    assert "Traceback" not in result.stderr


def test_production_starts_from_a_minimal_file_and_serves_no_sample(start_gateway: Callable[..., Gateway],
                                                                    backend: Backend) -> None:
    """One upstream and one public declared route, no code edited: the sample families are not served."""
    config = (f'[upstreams.catalog]\ntargets = ["{backend.url}"]\n\n[[routes]]\npath = "/api/catalog/<path:rest>"\n'
              'upstream = "catalog"\nupstream_path = "/catalog/{rest}"\nauth = "public"\n')
    gateway = start_gateway(config, env={"GATEWAY_ENV": "production"})
    status, _, body = fetch(gateway, "/api/catalog/products")
    assert status == 200, gateway.log()
    assert json.loads(body)["target"] == "/catalog/products"
    for path in ("/api/users", "/api/users/u-1", "/web/users/u-1/overview"):
        status, headers, _ = fetch(gateway, path)
        assert (status, headers["Content-Type"]) == (404, "application/problem+json"), path
    assert len(backend.received) == 1
    assert "Traceback" not in gateway.log()
