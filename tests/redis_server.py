"""Throwaway Redis processes for tests: a server, a Sentinel in front of one, a small Cluster.

Each runs the real ``redis-server`` on a free loopback port with no persistence, in its own
temporary directory, and can be stopped, restarted on the same port, paused (SIGSTOP: a server
that accepts connections but never answers) and resumed. Usable as context managers::

    from tests.redis_server import RedisServer

    with RedisServer() as server:
        store = create_store(server.url)
        server.stop()     # clients now get "connection refused"
        server.restart()  # same port, empty data

A tiny blocking RESP client (`RedisServer.command`) sets things up without an event loop.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

# TOLLGATE_TEST_REDIS_SERVER names another binary (a path that does not exist plays a machine without Redis).
REDIS_SERVER = (os.environ.get("TOLLGATE_TEST_REDIS_SERVER") or shutil.which("redis-server")
                or "/usr/bin/redis-server")
# The skip reason of every test that needs redis-server; tests/conftest.py counts them in the run's last line.
REDIS_MISSING = "redis-server is not installed"
REDIS_INSTALL_HINT = "apt-get install redis-server (Debian/Ubuntu), brew install redis (macOS)"


def redis_available() -> bool:
    return os.access(REDIS_SERVER, os.X_OK)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster_bus: bool = False) -> int:
    """A loopback port nobody listens on (and, for Cluster nodes, port + 10000 too)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if not cluster_bus or (port + 10000 <= 65535 and _bindable(port + 10000)):
            return port
    raise RuntimeError("no free port pair found")


class RedisError(Exception):
    """An error reply from the test client."""


def command(port: int, *args: object, host: str = "127.0.0.1", timeout: float = 2.0) -> Any:
    """Send one command and return the parsed reply (bytes, int, list, None; errors raise)."""
    parts = [str(a).encode() if not isinstance(a, bytes) else a for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((host, port), timeout=timeout) as conn, conn.makefile("rb") as reply:
        conn.sendall(request)
        return _read_reply(reply)


def _read_reply(stream: Any) -> Any:
    line = stream.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"-":
        raise RedisError(body.decode())
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2]
    if kind == b"*":
        size = int(body)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise RedisError(f"unexpected reply {line!r}")


class RedisServer:
    """One ``redis-server`` process on loopback.

    ``args`` are extra command-line options; ``config`` is config-file text (needed by Sentinel).
    """

    def __init__(
        self,
        *args: str,
        port: int | None = None,
        config: str | None = None,
        sentinel: bool = False,
        cluster_bus: bool = False,
        binary: str = REDIS_SERVER,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(cluster_bus)
        self._fixed_port = port is not None
        self._cluster_bus = cluster_bus
        self._args = list(args)
        self._config = config
        self._sentinel = sentinel
        self._binary = binary
        self._dir = Path(tempfile.mkdtemp(prefix="tollgate-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _argv(self) -> list[str]:
        argv = [self._binary]
        if self._config is not None:
            path = self._dir / "redis.conf"
            path.write_text(self._config)
            argv.append(str(path))
        if self._sentinel:
            argv.append("--sentinel")
        else:
            argv += ["--save", "", "--appendonly", "no"]
        argv += ["--port", str(self.port), "--bind", self.host, "--dir", str(self._dir)]
        argv += ["--daemonize", "no", "--protected-mode", "no", *self._args]
        return argv

    def start(self, timeout: float = 5.0) -> RedisServer:
        """Start and wait until it answers PING (a fresh port is picked if the chosen one was taken)."""
        for _ in range(3):
            log = open(self._dir / "redis.log", "ab")
            argv = self._argv()
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self._dir)
            log.close()
            if self._wait_ready(timeout):
                return self
            self._kill()
            if self._fixed_port:
                break
            self.port = free_port(self._cluster_bus)
        tail = (self._dir / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                if self.command("PING", timeout=0.5) == b"PONG":
                    return True
            except (OSError, RedisError):
                pass
            time.sleep(0.01)
        return False

    def command(self, *args: object, timeout: float = 2.0) -> Any:
        return command(self.port, *args, host=self.host, timeout=timeout)

    def flushall(self) -> None:
        self.command("FLUSHALL")
        self.command("SCRIPT", "FLUSH")

    def stop(self) -> None:
        """Kill it (SIGKILL: like a crash; data is gone, the port refuses connections)."""
        self._kill()

    def restart(self, timeout: float = 5.0) -> RedisServer:
        """Start again on the same port."""
        self._kill()
        self._fixed_port = True
        return self.start(timeout)

    def pause(self) -> None:
        """Freeze it: connections are accepted by the kernel but never answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(timeout=5)

    def close(self) -> None:
        """Stop and remove its directory."""
        self._kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _info(server: RedisServer, section: str) -> dict[str, str]:
    text = server.command("INFO", section).decode()
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, RedisError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout:g} s")


class RedisSentinelSet:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels monitoring them as ``service``; `url` is a
    ``sentinel://`` URL naming every Sentinel. With a replica, `failover` promotes it as an operator would."""

    def __init__(self, service: str = "mymaster", *, replicas: int = 0, sentinels: int = 1) -> None:
        self.service = service
        self.master = RedisServer()
        self.replicas = [RedisServer() for _ in range(replicas)]
        self.sentinels: list[RedisServer] = []
        self._count = sentinels

    @property
    def sentinel(self) -> RedisServer:
        return self.sentinels[0]

    @property
    def url(self) -> str:
        assert self.sentinels
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        return f"sentinel://{hosts}/{self.service}"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self, timeout: float = 10.0) -> RedisSentinelSet:
        self.master.start()
        for replica in self.replicas:
            replica.start()
            replica.command("REPLICAOF", self.master.host, self.master.port)
        for replica in self.replicas:
            _wait(lambda r=replica: _info(r, "replication").get("master_link_status") == "up", timeout,
                  "a replica did not sync")
        quorum = self._count // 2 + 1
        config = (
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
        )
        self.sentinels = [RedisServer(config=config, sentinel=True).start() for _ in range(self._count)]
        _wait(lambda: all(self.reported_port(s) == self.master.port for s in self.sentinels), timeout,
              "sentinels do not report the master")
        if self.replicas:
            _wait(lambda: all(int(_info(s, "sentinel").get("master0", "slaves=0").split("slaves=")[1].split(",")[0])
                              == len(self.replicas) for s in self.sentinels), timeout,
                  "sentinels do not know the replicas")
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every Sentinel names one master and every replica replicates from it (after a failover the old
        master rejoins as a replica only once a Sentinel reconfigures it, seconds later)."""
        def settled() -> bool:
            if len({self.reported_port(s) for s in self.sentinels}) != 1:
                return False
            info = _info(self.current_master(), "replication")
            online = [v for k, v in info.items() if k.startswith("slave") and "state=online" in v]
            return len(online) == len(self.replicas)

        _wait(settled, timeout, "the set did not settle")

    def reported_port(self, sentinel: RedisServer | None = None) -> int | None:
        address = (sentinel or self.sentinel).command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(address[1]) if address else None

    def current_master(self) -> RedisServer:
        port = self.reported_port()
        return next(server for server in self.servers if server.port == port)

    def failover(self, timeout: float = 15.0) -> RedisServer:
        """SENTINEL FAILOVER; returns the new master once it takes writes and every Sentinel names it."""
        old = self.current_master()
        # a Sentinel promotes only a replica it has heard from lately ("NOGOODSLAVE" until then)
        _wait(lambda: self.sentinel.command("SENTINEL", "FAILOVER", self.service) == b"OK", timeout,
              "Sentinel found no replica to promote")
        _wait(lambda: self.reported_port() not in (None, old.port), timeout, "no failover")
        new = self.current_master()
        _wait(lambda: _info(new, "replication").get("role") == "master"
              and all(self.reported_port(s) == new.port for s in self.sentinels), timeout,
              "the new master is not in charge")
        return new

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        for server in self.servers:
            server.close()

    def __enter__(self) -> RedisSentinelSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClusterSet:
    """``size`` master nodes sharing the 16384 slots, each with ``replicas`` replicas; `url` is
    ``redis+cluster://`` naming every node. With replicas, `failover` promotes one as an operator would."""

    def __init__(self, size: int = 3, *, replicas: int = 0) -> None:
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        args += ("--cluster-node-timeout", "2000")
        self.nodes = [RedisServer(*args, cluster_bus=True) for _ in range(size)]
        self.replicas = [RedisServer(*args, cluster_bus=True) for _ in range(size * replicas)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    @property
    def every_node(self) -> list[RedisServer]:
        return [*self.nodes, *self.replicas]

    def start(self, timeout: float = 20.0) -> RedisClusterSet:
        everyone = self.every_node
        for node in everyone:
            node.start()
        first = everyone[0]
        for node in everyone[1:]:
            first.command("CLUSTER", "MEET", node.host, node.port)
        per_node = 16384 // len(self.nodes)
        for i, node in enumerate(self.nodes):
            low = i * per_node
            high = 16383 if i == len(self.nodes) - 1 else low + per_node - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", low, high)
        _wait(lambda: all(self._ready(node) for node in everyone), timeout, "cluster did not become ready")
        for i, replica in enumerate(self.replicas):
            master = self.nodes[i % len(self.nodes)]
            replica.command("CLUSTER", "REPLICATE", master.command("CLUSTER", "MYID").decode())
        for replica in self.replicas:
            _wait(lambda r=replica: _info(r, "replication").get("master_link_status") == "up", timeout,
                  "a replica did not sync")
        _wait(lambda: all(self._ready(node) for node in everyone), timeout, "cluster did not settle")
        return self

    def _ready(self, node: RedisServer) -> bool:
        info = node.command("CLUSTER", "INFO").decode()
        fields = dict(line.split(":", 1) for line in info.split("\r\n") if ":" in line)
        known = fields.get("cluster_known_nodes") == str(len(self.every_node))
        return known and fields.get("cluster_state") == "ok"

    def master_of(self, key: str) -> RedisServer:
        slot = int(self.nodes[0].command("CLUSTER", "KEYSLOT", key))
        for node in self.every_node:
            if node.running and _info(node, "replication").get("role") == "master":
                for entry in node.command("CLUSTER", "SLOTS"):
                    if entry[0] <= slot <= entry[1]:
                        port = int(entry[2][1])
                        return next(n for n in self.every_node if n.port == port)
        raise LookupError(key)

    def failover(self, key: str, timeout: float = 15.0) -> RedisServer:
        """CLUSTER FAILOVER on a replica of the master holding ``key`` (no acknowledged write is lost: the master
        stops taking writes until the replica has caught up); returns the new master once the cluster agrees."""
        old = self.master_of(key)
        old_id = old.command("CLUSTER", "MYID").decode()
        replica = next(n for n in self.replicas + self.nodes
                       if n.running and _info(n, "replication").get("master_port") == str(old.port))
        replica.command("CLUSTER", "FAILOVER")
        _wait(lambda: _info(replica, "replication").get("role") == "master" and self.master_of(key) is replica,
              timeout, "no failover")
        _wait(lambda: all(self._ready(node) for node in self.every_node if node.running), timeout,
              "cluster did not settle after the failover")
        assert old_id != replica.command("CLUSTER", "MYID").decode()
        return replica

    def flushall(self) -> None:
        for node in self.every_node:
            if _info(node, "replication").get("role") == "master":
                node.flushall()

    def close(self) -> None:
        for node in self.every_node:
            node.close()

    def __enter__(self) -> RedisClusterSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
