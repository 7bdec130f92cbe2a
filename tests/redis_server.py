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


class RedisSentinelSet:
    """A master and one Sentinel monitoring it as ``service``; `url` is a ``sentinel://`` URL."""

    def __init__(self, service: str = "mymaster") -> None:
        self.service = service
        self.master = RedisServer()
        self.sentinel: RedisServer | None = None

    @property
    def url(self) -> str:
        assert self.sentinel is not None
        return f"sentinel://{self.sentinel.host}:{self.sentinel.port}/{self.service}"

    def start(self, timeout: float = 5.0) -> RedisSentinelSet:
        self.master.start()
        config = (
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
        )
        self.sentinel = RedisServer(config=config, sentinel=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            address = self.sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            if address and int(address[1]) == self.master.port:
                return self
            time.sleep(0.02)
        raise RuntimeError("sentinel does not report the master")

    def close(self) -> None:
        if self.sentinel is not None:
            self.sentinel.close()
        self.master.close()

    def __enter__(self) -> RedisSentinelSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClusterSet:
    """``size`` master nodes (no replicas) sharing the 16384 slots; `url` is ``redis+cluster://``."""

    def __init__(self, size: int = 3) -> None:
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        args += ("--cluster-node-timeout", "2000")
        self.nodes = [RedisServer(*args, cluster_bus=True) for _ in range(size)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 10.0) -> RedisClusterSet:
        for node in self.nodes:
            node.start()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            first.command("CLUSTER", "MEET", node.host, node.port)
        per_node = 16384 // len(self.nodes)
        for i, node in enumerate(self.nodes):
            low = i * per_node
            high = 16383 if i == len(self.nodes) - 1 else low + per_node - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", low, high)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._ready(node) for node in self.nodes):
                return self
            time.sleep(0.05)
        raise RuntimeError("cluster did not become ready")

    def _ready(self, node: RedisServer) -> bool:
        info = node.command("CLUSTER", "INFO").decode()
        fields = dict(line.split(":", 1) for line in info.split("\r\n") if ":" in line)
        known = fields.get("cluster_known_nodes") == str(len(self.nodes))
        return known and fields.get("cluster_state") == "ok"

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
