"""The image of deploy/Containerfile, built with buildah and its own command run: probes, a proxied route, a drain.

The gateway runs inside the image's filesystem (``buildah run --isolation chroot --network host``) with the
Deployment's environment and the ConfigMap's file, /tmp on a tmpfs as the pod's emptyDir, bound to a free
loopback port; the upstream is the kit's fake backend on the host. Needs buildah, podman and debootstrap
(.ci/run installs them): skipped without them on a developer's machine, a failure under CI=true. Without a
registry the image is built on the Debian base deploy/image.py makes with debootstrap; FRONTDESK_IMAGE_BASE
names another base (python:3.11-slim where a registry is reachable). The base and the build's layers are
cached, so a rerun repeats only the steps whose inputs changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from app.testing.backend import Backend
from tests.deploy import API_KEY, CONFIG_PATH, ROOT, SECRET_VALUES, deployment_environment, gateway_toml
from tests.fakes import stop_by_pid

pytestmark = [pytest.mark.e2e, pytest.mark.image]

IMAGE = "localhost/frontdesk:smoke-test"
TOOLS = ("buildah", "podman", "debootstrap")
# A build from nothing: debootstrap (about 45 s here, several minutes on a slow mirror), pip, the commit.
BUILD_TIMEOUT = 900
# What the gateway may leave in the container's own layer: the mount point buildah makes for the config file.
MOUNT_POINTS = {"/etc", "/etc/frontdesk", CONFIG_PATH}


def _require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")]
    if missing:
        message = f"the image smoke test needs {', '.join(missing)} (apt-get install buildah podman debootstrap)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built (or found in buildah's layer cache) once for this module."""
    _require_tools()
    base = os.environ.get("FRONTDESK_IMAGE_BASE")
    command = [sys.executable, str(ROOT / "deploy" / "image.py"), "build", "--tag", IMAGE]
    command += ["--base", base] if base else ["--local-base"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stderr[-6000:]
    return IMAGE


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """A working container of the image, removed afterwards."""
    name = f"frontdesk-smoke-{uuid.uuid4().hex[:12]}"
    subprocess.run(["buildah", "from", "--name", name, image], check=True, capture_output=True, timeout=120)
    yield name
    subprocess.run(["buildah", "rm", name], capture_output=True, timeout=120)


def _config(image: str) -> dict[str, object]:
    inspected = subprocess.run(["buildah", "inspect", "--type", "image", image], check=True, capture_output=True,
                               text=True, timeout=60)
    config: dict[str, object] = json.loads(inspected.stdout)["OCIv1"]["config"]
    return config


def _children(pid: int) -> list[int]:
    """Children of every thread of pid (buildah, a Go program, forks from any of its threads)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass  # the thread or the process is gone
    return children


def _gunicorns(root: int) -> tuple[int, list[int]]:
    """The gunicorn master under ``buildah run``'s process, found by walking its descendants, and its workers."""
    pending, found = [root], []
    while pending:
        pid = pending.pop()
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"python3") and argv[1:2] and argv[1].endswith(b"/gunicorn"):
            found.append(pid)
        pending.extend(_children(pid))
    masters = [pid for pid in found if not any(pid in _children(other) for other in found)]
    assert len(masters) == 1, f"gunicorn processes under buildah run: {found}"
    return masters[0], [pid for pid in found if pid != masters[0]]


def _uid(pid: int) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    return int(line.split()[2])  # the effective uid


def _pss_kib(pid: int) -> int:
    line = next(line for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines() if line.startswith("Pss:"))
    return int(line.split()[1])


@pytest.mark.timeout(BUILD_TIMEOUT + 60)
def test_image_is_configured_as_the_manifests_expect_and_carries_no_build_secret(image: str,
                                                                                 container: str) -> None:
    config = _config(image)
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["gunicorn", "-c", "gunicorn.conf.py"] and not config.get("Entrypoint")
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert isinstance(config["Env"], list)
    env = dict(entry.split("=", 1) for entry in config["Env"])
    assert env["GATEWAY_BIND"] == "0.0.0.0:8080" and env["GATEWAY_ENV"] == "production"
    assert env["GATEWAY_METRICS_DIR"].startswith("/tmp/")
    assert not [key for key in env if key.startswith("PIP_") or key.startswith("GATEWAY_AUTH")]
    root = Path(subprocess.run(["buildah", "mount", container], check=True, capture_output=True, text=True,
                               timeout=60).stdout.strip())
    try:
        # The build's pip settings were mounted for two steps only: no layer holds them.
        assert not (root / "run" / "secrets").exists() or not list((root / "run" / "secrets").iterdir())
        assert not [path for path in ("etc/pip.conf", "etc/xdg/pip", "root/.config/pip") if (root / path).exists()]
        assert not (root / "src").exists(), "the build stage's sources stay out of the runtime image"
        # The code belongs to root: the gateway's user cannot change what it runs.
        assert (root / "opt" / "frontdesk").stat().st_uid == 0
        assert (root / "srv" / "frontdesk" / "gunicorn.conf.py").stat().st_uid == 0
        assert (root / "bin" / "sleep").exists(), "the Deployment's preStop runs sleep"
    finally:
        subprocess.run(["buildah", "umount", container], capture_output=True, timeout=60)
    size = int(subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", image], check=True,
                              capture_output=True, text=True, timeout=60).stdout)
    print(f"image size: {size / 1e6:.0f} MB")
    assert size < 400e6


def _listening_port(log: Path, process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"the gateway did not listen (exit {process.poll()}):\n{log.read_text(errors='replace')}")


def _first_ok(url: str, timeout: float = 60.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = requests.get(url, timeout=2)
            if answer.status_code == 200:
                return answer
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{url} never answered 200"
        time.sleep(0.02)


@pytest.mark.timeout(BUILD_TIMEOUT + 120)
def test_image_command_serves_probes_and_a_proxied_route_then_drains(container: str, backend: Backend,
                                                                     tmp_path: Path) -> None:
    config = _config(IMAGE)
    assert isinstance(config["Cmd"], list)
    toml = tmp_path / "gateway.toml"
    toml.write_text(gateway_toml())
    env = {
        **deployment_environment(),
        # Only here: loopback and a free port (port 0, read back from gunicorn's log), the fake orders service.
        "GATEWAY_BIND": "127.0.0.1:0",
        "GATEWAY_SERVER_LOG_LEVEL": "info",
        "GATEWAY_UPSTREAMS__ORDERS__TARGETS": f'["{backend.url}"]',
    }
    command = ["buildah", "run", "--isolation", "chroot", "--network", "host",
               "--mount", "type=tmpfs,destination=/tmp", "--volume", f"{toml}:{CONFIG_PATH}:ro"]
    command += [f"--env={key}={value}" for key, value in env.items()]
    command += [container, "--", *config["Cmd"], "--no-control-socket"]
    log = tmp_path / "gateway.log"
    started = time.monotonic()
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    master = 0
    try:
        url = f"http://127.0.0.1:{_listening_port(log, process)}"
        assert _first_ok(url + "/livez").json() == {"status": "live"}
        live = time.monotonic() - started
        assert _first_ok(url + "/readyz").json() == {"status": "ready"}
        ready = time.monotonic() - started

        master, workers = _gunicorns(process.pid)
        assert len(workers) == int(env["GATEWAY_WORKERS"])
        assert {_uid(pid) for pid in [master, *workers]} == {10001}

        answer = requests.get(url + "/api/orders/o-1001?fields=total", headers={"X-API-Key": API_KEY}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Via"] == "1.1 frontdesk"
        backend.assert_forwarded("GET", "/orders/o-1001", query="fields=total",
                                 headers={"X-Auth-Consumer": "ci", "X-API-Key": None})
        refused = requests.get(url + "/api/orders/o-1001", timeout=10)
        assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"
        scrape = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {SECRET_VALUES['metrics-token']}"},
                              timeout=10)
        assert scrape.status_code == 200
        assert re.search(r'frontdesk_requests_total\{[^}]*route="/api/orders/<path:rest>"', scrape.text), scrape.text
        pss = {pid: _pss_kib(pid) for pid in [master, *workers]}

        stopping = time.monotonic()
        os.kill(master, signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text(errors="replace")
        stopped = time.monotonic() - stopping
    finally:
        if process.poll() is None:
            if master:
                os.kill(master, signal.SIGKILL)
            stop_by_pid(process)
    # Nothing was written outside /tmp: the image runs on a read-only root filesystem.
    changed = subprocess.run(["podman", "diff", container], check=True, capture_output=True, text=True, timeout=60)
    written = {line.split(maxsplit=1)[1] for line in changed.stdout.splitlines() if line.strip()}
    assert written <= MOUNT_POINTS, written - MOUNT_POINTS
    print(f"image start: /livez after {live:.2f} s, /readyz after {ready:.2f} s; SIGTERM to exit {stopped:.2f} s; "
          f"PSS KiB master {pss[master]}, workers {sorted(pss[pid] for pid in workers)}")
