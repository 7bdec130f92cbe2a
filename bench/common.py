"""What the benchmarks share: the gateway under test (Kong double -> Tollgate -> mock LLM),
/proc readings of one process, and a load loop.

The mock LLM runs in its own process and the Kong double in the benchmark's, so the CPU
read from /proc for the Tollgate process is Tollgate's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import aiohttp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.gateway.routes import deck  # noqa: E402
from tests.harness import KongDouble  # noqa: E402
from tests.harness.procs import TollgateServer  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(int(_stat(int(name))[1]), []).append(int(name))
            except (OSError, IndexError):
                continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes, and of their children already reaped (fields 14-17)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat(pid)
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / CLOCK_TICKS


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/statm") as f:
            total += int(f.read().split()[1]) * PAGE_KB
    return total


def interpreter() -> str:
    """This Python, for a benchmark's header: its version, path and whether libpython is a shared library.

    CPU numbers depend on how the interpreter was built: Tollgate's proxy measured ~10% less CPU under Debian's
    python3.11 (libpython linked in, PGO and LTO) than under a default pyenv build (libpython shared, neither), and
    LiteLLM 0-10% less (bench/run.py run with each, three runs; LiteLLM gets a venv of the same interpreter); the
    proxy's ratio with Kong's side stayed 0.052-0.057. Absolute numbers do not travel between builds."""
    with open("/proc/self/maps") as f:
        shared = any("libpython" in line for line in f)
    return f"Python {sys.version.split()[0]} ({sys.executable}, libpython {'shared' if shared else 'linked in'})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def mock_llm_process(**flags: Any) -> AsyncIterator[str]:
    """The mock LLM in its own process (its CPU is not the gateway's); ``flags`` are its command-line options."""
    port = free_port()
    argv = [sys.executable, "-m", "tollgate.mock", "--host", "127.0.0.1", "--port", str(port)]
    for name, value in {"record_limit": 0, **flags}.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(url + "/__mock/health", 30, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as answer:
                    if answer.status < 500:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


@asynccontextmanager
async def gateway(plugins: list[dict[str, Any]], *, redis_url: str | None = None) -> AsyncIterator[tuple[KongDouble, TollgateServer]]:
    process = TollgateServer(redis_url=redis_url, log_level="warning")
    process.start(30)
    try:
        config = deck(process.relay_url, {"/v1": plugins})
        double = KongDouble(process.entries("3.9", None), config, kong_version="3.9",
                            client_body_buffer_size=10 * 1024 * 1024)
        await double.start()
        try:
            yield double, process
        finally:
            await double.stop()
    finally:
        process.cleanup()


def percentile(samples: list[float], p: float, empty: float = float("nan")) -> float:
    """The ``p``-th percentile of ``samples`` (nearest rank), ``empty`` when there are none."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else empty


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p, 0.0) * 1000


async def load(url: str, body: bytes, requests: int, concurrency: int, headers: dict[str, str] | None = None
               ) -> LoadResult:
    """POST ``body`` ``requests`` times with ``concurrency`` workers; read every answer whole."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    result = LoadResult(requests=0, seconds=0.0)
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status != 200:
                        result.errors += 1
                result.latencies.append(time.perf_counter() - started)
                result.requests += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def chat_body(size: int = 4400, **extra: Any) -> bytes:
    """A chat request of about ``size`` bytes (the benchmark issue's 4.4 KB body)."""
    import orjson

    filler = ("The quick brown fox jumps over the lazy dog. " * (size // 45 + 1))[: max(0, size - 200)]
    return orjson.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": filler}], **extra})


async def measure(call: Any, calls: int, concurrency: int) -> tuple[float, float]:
    """(wall us, this process's CPU us) per call of ``call()``, ``concurrency`` calls in flight (client benches)."""
    per_worker = max(1, calls // concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = per_worker * concurrency
    return (time.perf_counter() - wall) / done * 1e6, (time.process_time() - cpu) / done * 1e6
