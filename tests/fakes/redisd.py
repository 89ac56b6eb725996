"""A real redis-server on a free loopback port, and a server that accepts connections and never answers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import pytest
import redis

from tests.fakes import accept_each, free_port, free_ports, stop_by_pid

REDIS_SERVER = "/usr/bin/redis-server"


def redis_binary() -> str:
    """The redis-server binary; under CI=true a missing one fails the run instead of skipping."""
    found = REDIS_SERVER if os.access(REDIS_SERVER, os.X_OK) else shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (.ci/run installs the Debian package redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return found


class _Node:
    """One redis-server process with its own directory, restartable on its port (a cluster node keeps its id)."""

    def __init__(self, directory: Path, arguments: list[str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = directory / str(self.port)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.arguments = arguments
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> _Node:
        """Start the server and wait until it answers PING."""
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 # A replica's first sync starts at once (the default waits 5 s for more replicas to join).
                 "--repl-diskless-sync-delay", "0", "--dir", str(self.directory), *self.arguments],
                stdout=log, stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        """A plain client of this server."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    @property
    def running(self) -> bool:
        """Whether the process is up (it may have been killed)."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: no goodbye to the cluster or the sentinels."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def stop(self) -> None:
        """Stop the server by its pid."""
        if self.process is not None:
            stop_by_pid(self.process, grace=10)
        self.process = None


class RedisServer(_Node):
    """``redis-server`` without persistence on 127.0.0.1; stoppable and restartable on the same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, [], port)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        super().start()
        return self

    def command_calls(self) -> dict[str, int]:
        """Calls so far by command (commands run inside scripts included), less INFO itself."""
        stats: dict[str, dict[str, Any]] = self.client().info("commandstats")  # type: ignore[assignment]
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
                if name != "cmdstat_info"}


class SilentServer:
    """Accepts TCP connections and never answers (a hung Redis)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=accept_each, args=(self.listener, self.held.append), daemon=True)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


def _command(client: Any, *arguments: object) -> Any:
    """A raw command (redis-py leaves execute_command untyped and parses some answers: CLUSTER INFO, INFO)."""
    return client.execute_command(*arguments)


def _tool(name: str, package: str) -> str:
    """A Redis tool (redis-cli, redis-sentinel); under CI=true a missing one fails the run instead of skipping."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (.ci/run installs the Debian package {package})")
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return found


class ClusterServers:
    """A Redis Cluster of ``primaries`` nodes with ``replicas`` replicas each, on free ports (STACK-NOTES' recipe)."""

    def __init__(self, directory: Path, primaries: int = 3, replicas: int = 0, node_timeout_ms: int = 1000) -> None:
        self.replicas = replicas
        # A replica may take over however long it was cut off (the default refuses after 10 node timeouts).
        arguments = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", str(node_timeout_ms), "--cluster-replica-validity-factor", "0"]
        # The bus port is free too (by default it is the port + 10000, which may be taken or past 65535).
        count = primaries * (1 + replicas)
        ports = free_ports(2 * count)
        self.nodes = [_Node(directory, [*arguments, "--cluster-port", str(ports[count + n])], ports[n])
                      for n in range(count)]

    @property
    def url(self) -> str:
        """The gateway's URI for it: every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> ClusterServers:
        """Start the nodes, assign the slots, wait until every node says cluster_state:ok."""
        cli = _tool("redis-cli", "redis-tools")
        for node in self.nodes:
            node.start()
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every running node reports cluster_state:ok and every replica is in sync with its primary."""
        deadline = time.monotonic() + timeout
        while not all(self._ok(node) for node in self.nodes if node.running):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    @staticmethod
    def _ok(node: _Node) -> bool:
        try:
            info = _command(node.client(), "CLUSTER INFO")  # redis-py parses it into a dict
            replication = cast("dict[str, Any]", node.client().info("replication"))
            synced = replication.get("master_link_status", "up") == "up"  # a primary has no link
            return bool(info.get("cluster_state") == "ok") and synced
        except redis.RedisError:
            return False

    def primaries(self) -> list[_Node]:
        """The nodes that serve slots now (a failover changes them)."""
        roles = {node.port: _command(node.client(), "ROLE")[0] for node in self.nodes if node.running}
        return [node for node in self.nodes if roles.get(node.port) == b"master"]

    def client(self) -> redis.cluster.RedisCluster:
        """A cluster client (the tests read what the gateway wrote)."""
        return redis.cluster.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=2)

    def node_of(self, key: str) -> _Node:
        """The node serving ``key``'s slot."""
        port = cast(Any, self.client()).get_node_from_key(key).port  # untyped in redis-py
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelServers:
    """One master, one replica and three sentinels (quorum 2) watching them as ``service``, on free ports."""

    def __init__(self, directory: Path, service: str = "frontdesk", down_after_ms: int = 1000) -> None:
        self.directory = directory
        self.service = service
        self.down_after_ms = down_after_ms
        master, replica, *self.sentinel_ports = free_ports(5)
        self.master = _Node(directory, [], master)
        self.replica = _Node(directory, ["--replicaof", "127.0.0.1", str(master)], replica)
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The gateway's URI for it."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports) + "/" + self.service

    def start(self) -> SentinelServers:
        """Start both servers and the sentinels; wait until the replica is in sync and every sentinel sees it."""
        binary = _tool("redis-sentinel", "redis-sentinel")
        self.master.start()
        self.replica.start()
        for port in self.sentinel_ports:
            path = self.directory / f"sentinel-{port}.conf"
            path.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 10000\n"
                f"sentinel parallel-syncs {self.service} 1\n")
            with open(self.directory / f"sentinel-{port}.log", "ab") as log:
                self.sentinels.append(subprocess.Popen([binary, str(path)], stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not see the master, its replica and each other")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            if cast("dict[str, Any]", self.replica.client().info("replication")).get("master_link_status") != "up":
                return False
            for port in self.sentinel_ports:
                sentinel = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
                state = _command(sentinel, "SENTINEL", "MASTER", self.service)
                fields = dict(zip(state[::2], state[1::2]))
                if int(fields[b"num-slaves"]) < 1 or int(fields[b"num-other-sentinels"]) < 2:
                    return False
            return True
        except (redis.RedisError, KeyError):
            return False

    def master_port(self) -> int:
        """The port the sentinels name as master now."""
        sentinel = redis.Redis(host="127.0.0.1", port=self.sentinel_ports[0], socket_timeout=1)
        _, port = _command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def stop(self) -> None:
        for process in self.sentinels:
            stop_by_pid(process, grace=10)
        self.master.stop()
        self.replica.stop()
