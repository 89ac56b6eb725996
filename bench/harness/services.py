"""Start the servers of one benchmark run: upstreams (nginx or Python), nginx as a proxy, Redis, gunicorn apps."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness.procs import Service, listener, wait_http
from bench.payload import SMALL_JSON

__all__ = ["ROOT", "NGINX", "nginx_binary", "start_gunicorn", "start_nginx_proxy", "start_nginx_upstream",
           "start_python_upstream", "start_redis"]

ROOT = Path(__file__).resolve().parent.parent.parent
NGINX = "/usr/sbin/nginx"


def nginx_binary() -> str | None:
    """The nginx binary when installed (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    return NGINX if os.access(NGINX, os.X_OK) else shutil.which("nginx")


def _free_port() -> int:
    # Only for servers that must be told a port number (nginx, redis): bound, read, released.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_port(service: Service, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.check_alive()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{service.name} did not listen on {port}:\n{service.log_tail()}")


def _nginx_conf(directory: Path, workers: int, server: str, http_extra: str = "", access_log: str = "off") -> str:
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"  {kind}_temp_path {directory}/{kind};" for kind in kinds)
    # As root the workers would otherwise run as nobody and could not read the private temp directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
master_process on;
worker_processes {workers};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log {access_log};
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  sendfile on;
  tcp_nodelay on;
{temp}
{http_extra}
  server {{
{server}
  }}
}}
"""


def _start_nginx(name: str, directory: Path, conf: str, port: int) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(conf)
    log = directory / "stderr.log"
    binary = nginx_binary()
    assert binary is not None
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, "-p", str(directory), "-c", str(path), "-e", str(directory / "error.log")],
                                   stdout=out, stderr=subprocess.STDOUT)
    service = Service(name, process, f"http://127.0.0.1:{port}", log)
    _wait_port(service, port)
    return service


def start_nginx_upstream(directory: Path, big_file: Path) -> Service:
    """nginx answering the small JSON body on every path and ``big_file`` on /big (one worker)."""
    port = _free_port()
    body = SMALL_JSON.decode()
    assert "'" not in body and "$" not in body  # quoted as an nginx string below
    server = f"""    listen 127.0.0.1:{port} backlog=4096;
    location = /big {{ root {big_file.parent}; try_files /{big_file.name} =404;
                       default_type application/octet-stream; }}
    location / {{ default_type application/json; return 200 '{body}'; }}"""
    return _start_nginx("nginx upstream", directory, _nginx_conf(directory, 1, server), port)


def start_nginx_proxy(directory: Path, upstream_url: str | Sequence[str], workers: int) -> Service:
    """nginx as a plain reverse proxy with keep-alive upstream connections: to ``upstream_url``, or a round-robin
    load balancer over several (tests/test_e2e_multi_instance.py puts it in front of two gateway instances)."""
    port = _free_port()
    urls = [upstream_url] if isinstance(upstream_url, str) else list(upstream_url)
    servers = " ".join(f"server {url.removeprefix('http://')};" for url in urls)
    http_extra = f"  upstream backend {{ {servers} keepalive 256; keepalive_requests 10000000; }}"
    server = f"""    listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }}"""
    conf = _nginx_conf(directory, workers, server, http_extra, access_log=f"{directory}/access.log")
    return _start_nginx("nginx proxy", directory, conf, port)


def start_python_upstream(name: str, directory: Path, delay: float, big_bytes: int) -> Service:
    """bench/upstream_server.py on an inherited socket: the slow upstream, or the fast one without nginx."""
    sock = listener()
    port = sock.getsockname()[1]
    log = directory / f"{name.replace(' ', '-')}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench.upstream_server", "--fd", str(sock.fileno()),
                                    "--delay", str(delay), "--big-bytes", str(big_bytes)],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, pass_fds=[sock.fileno()])
    sock.close()
    service = Service(name, process, f"http://127.0.0.1:{port}", log, single=True)
    wait_http(service, "/ready")
    return service


def start_redis(directory: Path) -> Service:
    """A private redis-server without persistence."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    log = directory / "redis.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", str(directory)], stdout=out,
                                   stderr=subprocess.STDOUT)
    service = Service("redis", process, f"redis://127.0.0.1:{port}/0", log, single=True)
    _wait_port(service, port)
    return service


def start_gunicorn(name: str, directory: Path, app: str | None, env: dict[str, str], workers: int,
                   root: Path = ROOT) -> Service:
    """gunicorn with the gunicorn.conf.py of checkout ``root`` (gevent workers) serving ``app`` (None: the gateway).

    Everything GATEWAY_* of the caller's environment is dropped: only ``env`` configures the server. Output
    (the gateway's access log included) goes to a file in ``directory``, never to the terminal. Another
    ``root`` (a worktree of an older commit, for before/after figures) serves its own code.
    """
    sock = listener()
    port = sock.getsockname()[1]
    command = [sys.executable, "-m", "gunicorn", "-c", str(root / "gunicorn.conf.py"), "--no-control-socket",
               "--bind", f"fd://{sock.fileno()}", *([app] if app else [])]
    environment = {**{key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")},
                   "GATEWAY_WORKERS": str(workers), "PYTHONPATH": str(root), **env}
    log = directory / f"{name.replace(' ', '-')}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=root, env=environment, stdout=out, stderr=subprocess.STDOUT,
                                   pass_fds=[sock.fileno()])
    sock.close()  # the master holds its own copy
    return Service(name, process, f"http://127.0.0.1:{port}", log)
