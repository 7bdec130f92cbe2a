"""``make bench``: Tollgate against LiteLLM and against itself, on the same mock LLM and the same load (issue 7).

    python bench/run.py [--requests 10000] [--rounds 5] [--latency-requests 1000] [--stream-requests 200]
                        [--targets proxy,local,redis,litellm] [--no-litellm] [--same-body]
                        [--profile DIR] [--tollgate-code DIR]

Targets:

* ``proxy``   the ``tollgate serve`` process with tollgate-proxy alone on the route;
* ``local``   the full chain tollgate-token-limit + tollgate-cost-quota + tollgate-proxy, ``strategy: local``;
* ``redis``   the same chain, ``strategy: redis`` (a redis-server started here on a free loopback port);
* ``litellm`` LiteLLM's proxy, pinned (LITELLM_VERSION), installed by this script into its own venv under
  ``bench/out/`` (kept and reused), run offline with one worker and no database.

The Tollgate targets are driven through the Kong double (tests/harness: Kong's side of the plugin-server protocol,
in this process), LiteLLM directly. Only the gateway's own processes are measured: the Tollgate process (its /proc
CPU), LiteLLM's process tree. The load generator, the double, the mock LLM and Redis are not counted.

Load (fixed counts, fixed seeds): ~4.4 KB chat requests whose user message differs from request to request (seeded
words: no cache keyed on content can stand in for the work a new prompt costs; ``--same-body`` sends one body over
and over). Every target is started, warmed up (``--warmup`` requests), then the targets take turns: ``--requests``
at concurrency 32 in ``--rounds`` rounds, each round a slice for every target in turn, so a change in the machine's
load falls on all of them alike; CPU per request is the median round's (the table shows the range). Then
``--latency-requests`` at concurrency 1 (p50/p99) and ``--stream-requests`` streamed at concurrency 1 (TTFT added).
RSS is read after the warm-up and after the rounds; PDK round trips are counted by the double over the rounds.

The mock LLM runs in its own process and answers every chat with fixed usage (1000 prompt / 200 completion tokens);
streams have 20 content chunks, 2 ms apart. The mock records the instant it wrote each chunk (``chunk_times``,
perf_counter, i.e. CLOCK_MONOTONIC, comparable across processes on one host); the client notes when the first
content chunk reached it; the difference is the TTFT the gateway added.

Kong's side is added to each Tollgate target's CPU, as measured in a real Kong 3.9.3 (1 worker, issue 19):
``KONG_PROXY_MS`` (0.055 ms) for Kong's own proxying of the request plus ``KONG_ROUND_TRIP_MS`` (0.022 ms) per PDK
round trip the double counted; the ``+Kong`` column and its ratio to LiteLLM are what a Kong user pays. Without a
LiteLLM run (``--no-litellm``), ``--litellm-cpu-ms`` gives the figure to compare with (the issue measured 7.93 ms).

The last line is ``RESULT cpu_ratio_vs_litellm=... cpu_ratio_with_kong_full_chain=... cpu_ratio_with_kong_proxy=...
round_trips_full_chain=... round_trips_proxy=... rss_growth_pct=... ttft_added_ms_p50=...``: the full chain with the
redis strategy (else ``local``; its CPU per request divided by LiteLLM's; with Kong's side added), and the proxy alone
with Kong's side.

``--profile DIR`` records py-spy collapsed stacks of every round (the CPU numbers then include py-spy's
interruptions); ``--tollgate-code DIR`` runs the Tollgate processes from another copy of the package (before/after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
for path in (ROOT, BENCH):
    if path not in sys.path:
        sys.path.insert(0, path)

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from common import (chat_body, cpu_seconds, free_port, interpreter, mock_llm_process, percentile, rss_kb,  # noqa: E402
                    tree, wait_http)
from tests.gateway.routes import deck  # noqa: E402
from tests.harness import KongDouble  # noqa: E402
from tests.harness.procs import TollgateServer  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

LITELLM_VERSION = "1.108.7"
KONG_PROXY_MS = 0.055        # real Kong 3.9.3, 1 worker: CPU of proxying one 4.4 KB request with no plugin
KONG_ROUND_TRIP_MS = 0.022   # ... and of Kong's side of one plugin-server round trip
OUT = os.path.join(BENCH, "out")
# One LiteLLM venv per base interpreter: LiteLLM runs on the Python that runs this script, so the two are measured on
# the same build (a venv made by another Python would run LiteLLM on that one).
VENV = os.path.join(OUT, f"litellm-{LITELLM_VERSION}-py{sys.version_info[0]}.{sys.version_info[1]}-"
                         f"{hashlib.sha1(sys.base_prefix.encode()).hexdigest()[:8]}")
SEED = 7
CONCURRENCY = 32
PROMPT_TOKENS, COMPLETION_TOKENS = 1000, 200
STREAM_CHUNKS = 20
CHUNK_INTERVAL = 0.002        # seconds before each streamed chunk (the first included): one chunk per write
REPLY = " ".join(f"word{i}" for i in range(STREAM_CHUNKS))   # 20 words: 20 content chunks
MODEL = "gpt-4o-mini"
API_KEY = "sk-bench-0123456789abcdef"


# ------------------------------------------------------------------------------------------------ /proc readings

# ------------------------------------------------------------------------------------------------ load

@dataclass
class Run:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_chunk_at: list[float] = field(default_factory=list)   # perf_counter when the first content chunk arrived

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000


WORDS = ("the quick brown fox jumps over lazy dog gateway token budget limit stream chunk model answer "
         "request prompt cache route service consumer upstream provider latency window charge settle reserve "
         "policy header body plugin relay kong python summary context system user assistant message").split()


class Bodies:
    """The chat requests of a run: ~4.4 KB each, the user message different for every request (seeded), so no
    cache keyed on content (token counts, parsed bodies) can stand in for the work a new prompt costs."""

    def __init__(self, seed: int, stream: bool = False, same: bool = False) -> None:
        self._random = random.Random(seed)
        self._extra: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        self._same = chat_body(4400, model=MODEL, **self._extra) if same else None

    def next(self) -> bytes:
        if self._same is not None:
            return self._same
        text = " ".join(self._random.choices(WORDS, k=800))[:4280]
        return orjson.dumps({"model": MODEL, "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": text}], **self._extra})


async def drive(http: aiohttp.ClientSession, url: str, bodies: Bodies, requests: int, concurrency: int,
                stream: bool = False) -> Run:
    """POST ``requests`` bodies from ``concurrency`` workers; read every answer whole."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    run = Run()
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            body = bodies.next()
            started = time.perf_counter()
            first = None
            async with http.post(url, data=body, headers=headers) as answer:
                if stream:
                    async for data in answer.content.iter_any():
                        if first is None and b"word0" in data:
                            first = time.perf_counter()
                else:
                    await answer.read()
                ok = answer.status == 200
            run.latencies.append(time.perf_counter() - started)
            run.requests += 1
            if not ok:
                run.errors += 1
            if stream:
                run.first_chunk_at.append(first if first is not None else float("nan"))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - started
    return run


# ------------------------------------------------------------------------------------------------ the pieces

def mock_llm() -> Any:
    """The mock LLM: fixed usage, 20-chunk streams, the last streams' chunk instants kept."""
    return mock_llm_process(reply=REPLY, chunks=STREAM_CHUNKS, interval=CHUNK_INTERVAL, prompt_tokens=PROMPT_TOKENS,
                            completion_tokens=COMPLETION_TOKENS, record_limit=1000)


async def mock_chunk_times(http: aiohttp.ClientSession, mock_url: str, count: int) -> list[float]:
    """When the mock wrote the first content chunk of each of its last ``count`` streams."""
    async with http.get(mock_url + f"/__mock/requests?limit={count}") as answer:
        records = orjson.loads(await answer.read())
    firsts = [r["chunk_times"][0] if r["chunk_times"] else float("nan") for r in records if r["stream"]]
    return firsts[-count:]


async def clear_mock(http: aiohttp.ClientSession, mock_url: str) -> None:
    async with http.delete(mock_url + "/__mock/requests") as answer:
        await answer.read()


def proxy_plugin(mock_url: str) -> dict[str, Any]:
    return {"name": "tollgate-proxy", "config": {
        "route_type": "llm/v1/chat",
        "model": {"provider": "openai", "name": MODEL, "options": {"upstream_url": mock_url + "/v1/chat/completions"}},
        "auth": {"header_name": "Authorization", "header_value": f"Bearer {API_KEY}"}}}


def chain(mock_url: str, strategy: str) -> list[dict[str, Any]]:
    return [
        {"name": "tollgate-token-limit", "config": {
            "limits": [{"limit": 10 ** 12, "window_size": "minute", "tokens_count_strategy": "total_tokens"},
                       {"limit": 10 ** 13, "window_size": "hour", "tokens_count_strategy": "total_tokens"}],
            "identifier": "consumer", "strategy": strategy}},
        {"name": "tollgate-cost-quota", "config": {
            "budgets": [{"name": "monthly", "amount": 10 ** 9, "period": "month", "scope": "consumer"}],
            "strategy": strategy}},
        proxy_plugin(mock_url),
    ]


@dataclass
class Target:
    name: str
    label: str
    url: str
    pids: Any                       # () -> list of pids to measure
    double: KongDouble | None = None
    redis: RedisServer | None = None   # the store it uses, whose commands per request are counted


@contextlib.asynccontextmanager
async def tollgate(name: str, label: str, plugins: list[dict[str, Any]], redis: RedisServer | None = None,
                   code: str | None = None) -> AsyncIterator[Target]:
    # log level info: the analytics line every request writes is part of the cost.
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [code, os.environ.get("PYTHONPATH")]))} if code else None
    process = TollgateServer(redis_url=redis.url if redis else None, log_level="info", env=env)
    await process.astart(30)
    try:
        config = deck(process.relay_url, {"/v1": plugins})
        double = KongDouble(process.entries("3.9", None), config, kong_version="3.9",
                            client_body_buffer_size=10 * 1024 * 1024)
        await double.start()
        try:
            pid = process.pid
            yield Target(name, label, double.url + "/v1/chat/completions", lambda: [pid], double, redis)
        finally:
            await double.stop()
    finally:
        process.cleanup()


def litellm_bin() -> str:
    """LiteLLM's proxy in its own venv, installed on first use and reused after."""
    binary = os.path.join(VENV, "bin", "litellm")
    marker = os.path.join(VENV, ".installed")
    if os.path.exists(marker) and os.path.exists(binary):
        return binary
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {os.path.relpath(VENV, ROOT)} (once)...", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    os.makedirs(OUT, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    with open(os.path.join(OUT, "litellm-install.log"), "wb") as log:
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "--disable-pip-version-check", "-q",
                        f"litellm[proxy]=={LITELLM_VERSION}"], check=True, stdout=log, stderr=log)
    with open(marker, "w") as f:
        f.write(LITELLM_VERSION + "\n")
    return binary


@contextlib.asynccontextmanager
async def litellm(mock_url: str) -> AsyncIterator[Target]:
    binary = litellm_bin()
    work = tempfile.mkdtemp(prefix="bench-litellm-")
    config = os.path.join(work, "config.yaml")
    with open(config, "w") as f:
        f.write(f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: {mock_url}/v1
      api_key: {API_KEY}
""")
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true", "NO_PROXY": "*",
           "HOME": work}
    env.pop("DATABASE_URL", None)
    log = open(os.path.join(work, "litellm.log"), "wb")
    proc = subprocess.Popen([binary, "--config", config, "--host", "127.0.0.1", "--port", str(port),
                             "--num_workers", "1"], stdout=log, stderr=log, env=env, cwd=work,
                            start_new_session=True)
    try:
        await wait_http(f"http://127.0.0.1:{port}/health/liveliness", 180, proc)
        yield Target("litellm", f"LiteLLM {LITELLM_VERSION} (1 worker)", f"http://127.0.0.1:{port}/v1/chat/completions",
                     lambda: tree(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ measuring

@dataclass
class Measured:
    name: str
    label: str
    cpu_ms: float = float("nan")          # median over the rounds
    cpu_ms_all: float = float("nan")      # all rounds together
    cpu_spread: tuple[float, float] = (float("nan"), float("nan"))
    rps: float = float("nan")
    p50: float = float("nan")
    p99: float = float("nan")
    p99_c32: float = float("nan")
    round_trips: float | None = None
    redis_scripts: float | None = None    # per request of the concurrency-32 rounds (the redis target)
    redis_commands: float | None = None   # the same, every command counted (those run by scripts too)
    ttft_p50: float = float("nan")
    ttft_p99: float = float("nan")
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    errors: int = 0

    @property
    def with_kong_ms(self) -> float:
        """Tollgate's CPU plus Kong's side (its proxying and its half of each round trip); LiteLLM's as measured."""
        if self.round_trips is None:
            return self.cpu_ms
        return self.cpu_ms + KONG_PROXY_MS + KONG_ROUND_TRIP_MS * self.round_trips

    @property
    def rss_growth_pct(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.rss_before_kb * 100 if self.rss_before_kb else 0.0


class Bench:
    """One target under measurement: its client session, its bodies and what was measured so far."""

    def __init__(self, target: Target, args: argparse.Namespace) -> None:
        self.target = target
        self.out = Measured(target.name, target.label)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY))
        self.bodies = Bodies(SEED, same=args.same_body)
        self.stream_bodies = Bodies(SEED + 1, stream=True, same=args.same_body)
        self.cpu = 0.0
        self.per_round: list[float] = []   # CPU ms per request of each round
        self.requests = 0
        self.seconds = 0.0
        self.latencies: list[float] = []
        self.redis_scripts = 0
        self.redis_commands = 0

    async def warm_up(self, requests: int) -> None:
        warm = await drive(self.http, self.target.url, self.bodies, requests, CONCURRENCY)
        await drive(self.http, self.target.url, self.stream_bodies, min(100, requests), 4, stream=True)
        if warm.errors:
            raise RuntimeError(f"{self.target.label}: {warm.errors} of {warm.requests} warm-up requests failed")
        if self.target.double is not None:
            await self.target.double.settle()
            self.target.double.stats.reset()
        self.out.rss_before_kb = rss_kb(self.target.pids())

    async def round(self, requests: int, profile: str | None) -> None:
        """``requests`` at concurrency 32; the gateway's CPU over exactly this round."""
        pids = self.target.pids()
        profiler = start_profiler(self.target, pids[0], profile) if profile else None
        calls = redis_calls(self.target.redis)
        before = cpu_seconds(pids)
        loaded = await drive(self.http, self.target.url, self.bodies, requests, CONCURRENCY)
        if self.target.double is not None:
            await self.target.double.settle()
        spent = cpu_seconds(self.target.pids()) - before
        scripts, commands = redis_calls(self.target.redis)
        self.redis_scripts += scripts - calls[0]
        self.redis_commands += commands - calls[1] - 1   # less the INFO before
        self.cpu += spent
        self.per_round.append(spent * 1000 / max(1, loaded.requests))
        if profiler is not None:
            stop_profiler(profiler)
        self.requests += loaded.requests
        self.seconds += loaded.seconds
        self.latencies += loaded.latencies
        self.out.errors += loaded.errors

    async def finish(self, mock_url: str, args: argparse.Namespace) -> Measured:
        out, target = self.out, self.target
        out.rss_after_kb = rss_kb(target.pids())
        # The median round: one round disturbed by other work on the machine does not move it.
        out.cpu_ms = statistics.median(self.per_round) if self.per_round else float("nan")
        out.cpu_ms_all = self.cpu * 1000 / max(1, self.requests)
        out.cpu_spread = (min(self.per_round), max(self.per_round)) if self.per_round else (float("nan"),) * 2
        out.rps = self.requests / self.seconds if self.seconds else float("nan")
        out.p99_c32 = Run(latencies=self.latencies).percentile(99)
        if target.double is not None:
            served = len(target.double.stats.requests)
            out.round_trips = target.double.stats.total_round_trips / max(1, served)
        if target.redis is not None:
            out.redis_scripts = self.redis_scripts / max(1, self.requests)
            out.redis_commands = self.redis_commands / max(1, self.requests)

        single = await drive(self.http, target.url, self.bodies, args.latency_requests, 1)
        out.p50, out.p99 = single.percentile(50), single.percentile(99)
        out.errors += single.errors

        await clear_mock(self.http, mock_url)
        streamed = await drive(self.http, target.url, self.stream_bodies, args.stream_requests, 1, stream=True)
        out.errors += streamed.errors
        sent = await mock_chunk_times(self.http, mock_url, args.stream_requests)
        if len(sent) == len(streamed.first_chunk_at):
            added = sorted((got - at) * 1000 for got, at in zip(streamed.first_chunk_at, sent)
                           if got == got and at == at)
            if added:
                out.ttft_p50 = statistics.median(added)
                out.ttft_p99 = added[min(len(added) - 1, int(0.99 * len(added)))]
        else:
            print(f"  {target.label}: {len(sent)} mock streams for {len(streamed.first_chunk_at)} requests: "
                  "no TTFT", flush=True)
        await self.http.close()
        if out.errors:
            print(f"  {target.label}: {out.errors} requests did not answer 200", flush=True)
        print(f"  {target.label}: {out.cpu_ms:.3f} ms CPU/request (rounds {out.cpu_spread[0]:.3f}-"
              f"{out.cpu_spread[1]:.3f}), {out.rps:.0f} req/s, p50 {out.p50:.2f} ms, "
              f"TTFT added p50 {out.ttft_p50:.2f} ms, RSS {out.rss_before_kb // 1024} -> "
              f"{out.rss_after_kb // 1024} MB", flush=True)
        return out


def redis_calls(server: RedisServer | None) -> tuple[int, int]:
    """(scripts, commands) ``server`` has run so far: EVALSHA and EVAL calls, and every command, those the scripts
    ran included (reading them is one more command). (0, 0) without a server."""
    if server is None:
        return 0, 0
    stats = dict(re.findall(r"cmdstat_(\w+):calls=(\d+)", server.command("INFO", "commandstats").decode()))
    scripts = int(stats.get("evalsha", 0)) + int(stats.get("eval", 0))
    return scripts, sum(int(calls) for calls in stats.values())


def start_profiler(target: Target, pid: int, directory: str) -> subprocess.Popen:
    """py-spy on the gateway's main process for one concurrency-32 round (collapsed stacks; --profile only)."""
    os.makedirs(directory, exist_ok=True)
    out = os.path.join(directory, f"{target.name}-{time.monotonic_ns()}.txt")
    proc = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--rate", "500", "--nonblocking",
                             "--format", "raw", "--output", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)   # let it attach
    return proc


def stop_profiler(proc: subprocess.Popen) -> None:
    proc.send_signal(2)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------------ report

def fmt(value: float | None, spec: str) -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def litellm_ms(results: dict[str, Measured], args: argparse.Namespace) -> float:
    base = results.get("litellm")
    if base is not None and base.cpu_ms == base.cpu_ms:
        return base.cpu_ms
    return args.litellm_cpu_ms if args.litellm_cpu_ms else float("nan")


def report(results: dict[str, Measured], args: argparse.Namespace) -> str:
    base_ms = litellm_ms(results, args)
    lines = [
        "",
        f"Tollgate vs LiteLLM {LITELLM_VERSION}: {args.requests} requests at concurrency {CONCURRENCY} "
        f"in {args.rounds} rounds (~4.4 KB chat bodies, a different user message each), {args.latency_requests} at "
        f"concurrency 1, {args.stream_requests} streams of {STREAM_CHUNKS} chunks; {os.cpu_count()} CPUs; "
        f"{interpreter()}",
        "",
        f"{'target':<34} {'CPU ms/req':>10} {'rounds':>13} {'x LiteLLM':>9} {'+Kong ms':>8} {'x LiteLLM':>9} "
        f"{'req/s c32':>9} {'req/s/core':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'p99 c32':>8} {'RT/req':>6} {'scripts':>7} {'cmds':>5} "
        f"{'TTFT+ p50':>9} {'TTFT+ p99':>9} "
        f"{'RSS MB':>13} {'RSS +%':>6}",
    ]
    for m in results.values():
        ratio = m.cpu_ms / base_ms if base_ms else float("nan")
        with_kong = m.with_kong_ms if m.round_trips is not None else float("nan")
        lines.append(
            f"{m.label:<34} {fmt(m.cpu_ms, '.3f'):>10} {fmt(m.cpu_spread[0], '.3f'):>6}-{fmt(m.cpu_spread[1], '.3f'):<6} "
            f"{fmt(ratio, '.3f'):>9} {fmt(with_kong, '.3f'):>8} {fmt(with_kong / base_ms, '.3f'):>9} "
            f"{fmt(m.rps, '.0f'):>9} "
            f"{fmt(1000 / m.cpu_ms if m.cpu_ms else None, '.0f'):>10} {fmt(m.p50, '.2f'):>7} {fmt(m.p99, '.2f'):>7} "
            f"{fmt(m.p99_c32, '.1f'):>8} {fmt(m.round_trips, '.2f'):>6} {fmt(m.redis_scripts, '.2f'):>7} "
            f"{fmt(m.redis_commands, '.1f'):>5} {fmt(m.ttft_p50, '.2f'):>9} {fmt(m.ttft_p99, '.2f'):>9} "
            f"{m.rss_before_kb / 1024:>6.1f}>{m.rss_after_kb / 1024:<6.1f} {fmt(m.rss_growth_pct, '.2f'):>6}")
    lines += [
        "",
        "CPU ms/req: the gateway's own processes only (/proc user+system; Tollgate: the one `tollgate serve` process,",
        "  LiteLLM: its process tree), per request of a concurrency-32 round: the median of the rounds (rounds: the",
        "  lowest and highest). The targets take turns round by round. x LiteLLM: that CPU divided by LiteLLM's"
        + (f" ({base_ms:.3f} ms given with --litellm-cpu-ms)." if "litellm" not in results and base_ms == base_ms
           else "."),
        f"+Kong ms: Tollgate's CPU plus Kong's side, {KONG_PROXY_MS} ms for Kong's proxying + {KONG_ROUND_TRIP_MS} ms per",
        "  round trip (real Kong 3.9.3, 1 worker); x LiteLLM next to it: with Kong's side (the goals: full chain <= 0.10,",
        "  proxy alone <= 0.04).",
        "req/s c32: wall clock, for information: the load generator, the Kong double (Tollgate targets only), the",
        "  mock and the gateway share this machine. req/s/core: 1000 / CPU ms, what one core of the gateway serves.",
        "p50/p99 ms: concurrency 1. RT/req: PDK round trips per request counted by the Kong double at the socket.",
        "scripts, cmds: per request of the rounds, the redis target's server ran that many scripts (EVALSHA, EVAL) and",
        "  that many commands in all (those the scripts ran included; INFO commandstats).",
        "TTFT+: when the first content chunk reached the client minus when the mock wrote it (concurrency 1).",
        "RSS MB: before > after the concurrency-32 rounds (after a warm-up); RSS +%: growth over them.",
    ]
    return "\n".join(lines)


def result_line(results: dict[str, Measured], args: argparse.Namespace) -> str:
    nan = float("nan")
    full, proxy = results.get("redis") or results.get("local"), results.get("proxy")
    base_ms = litellm_ms(results, args)
    ratio = full.cpu_ms / base_ms if full is not None and base_ms else nan
    full_kong = full.with_kong_ms / base_ms if full is not None and full.round_trips is not None and base_ms else nan
    proxy_kong = proxy.with_kong_ms / base_ms if proxy is not None and proxy.round_trips is not None and base_ms else nan
    trips = full.round_trips if full is not None and full.round_trips is not None else nan
    proxy_trips = proxy.round_trips if proxy is not None and proxy.round_trips is not None else nan
    growth = full.rss_growth_pct if full is not None else nan
    ttft = full.ttft_p50 if full is not None else nan
    return (f"RESULT cpu_ratio_vs_litellm={ratio:.3f} cpu_ratio_with_kong_full_chain={full_kong:.3f} "
            f"cpu_ratio_with_kong_proxy={proxy_kong:.3f} round_trips_full_chain={trips:g} "
            f"round_trips_proxy={proxy_trips:g} rss_growth_pct={growth:.2f} ttft_added_ms_p50={ttft:.2f}")


# ------------------------------------------------------------------------------------------------ main

async def main(args: argparse.Namespace) -> None:
    random.seed(SEED)
    wanted = args.targets.split(",")
    if args.no_litellm and "litellm" in wanted:
        wanted.remove("litellm")
    if "litellm" in wanted:
        await asyncio.to_thread(litellm_bin)      # install first (timed apart from the measurements)
    results: dict[str, Measured] = {}
    started = time.monotonic()
    async with mock_llm() as mock_url, contextlib.AsyncExitStack() as stack:
        redis = None
        if "redis" in wanted:
            redis = RedisServer()
            redis.start()
            stack.callback(redis.stop)
        code = args.tollgate_code
        benches: list[Bench] = []
        for name in wanted:
            if name == "proxy":
                scope = tollgate(name, "Tollgate proxy only", [proxy_plugin(mock_url)], code=code)
            elif name == "local":
                scope = tollgate(name, "Tollgate full chain, local", chain(mock_url, "local"), code=code)
            elif name == "redis":
                assert redis is not None
                scope = tollgate(name, "Tollgate full chain, redis", chain(mock_url, "redis"), redis, code=code)
            elif name == "litellm":
                scope = litellm(mock_url)
            else:
                raise SystemExit(f"unknown target {name!r}")
            benches.append(Bench(await stack.enter_async_context(scope), args))
        print(f"started {', '.join(b.target.label for b in benches)}; warming up...", flush=True)
        for bench in benches:
            await bench.warm_up(args.warmup)
        # The targets take turns, a slice of the requests each per round: a change in the machine's load (other
        # work on it) falls on every target alike instead of on whichever ran at that moment.
        rounds = max(1, args.rounds)
        for i in range(rounds):
            share = args.requests // rounds + (1 if i < args.requests % rounds else 0)
            for bench in benches:
                await bench.round(share, args.profile)
            print(f"round {i + 1}/{rounds}: {share} requests per target", flush=True)
        for bench in benches:
            results[bench.target.name] = await bench.finish(mock_url, args)
    print(report(results, args))
    print(f"\n(measured in {time.monotonic() - started:.0f} s)")
    print(result_line(results, args))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="concurrency-32 requests per target")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="the targets take turns: each round sends "
                        "requests/rounds to each target in turn")
    parser.add_argument("--latency-requests", type=int, default=1000, help="concurrency-1 requests per target")
    parser.add_argument("--stream-requests", type=int, default=200, help="streamed requests per target (TTFT)")
    parser.add_argument("--targets", default="proxy,local,redis,litellm")
    parser.add_argument("--profile", metavar="DIR", help="record py-spy collapsed stacks of each gateway's "
                        "concurrency-32 run into DIR (the CPU numbers then include py-spy's interruptions)")
    parser.add_argument("--tollgate-code", metavar="DIR", help="run the Tollgate process from the package under "
                        "DIR (e.g. an older checkout's plugins/) instead of the installed one: before/after tables")
    parser.add_argument("--same-body", action="store_true", help="send one body over and over (content caches "
                        "then hit on every request) instead of a different user message per request")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (ratios need --litellm-cpu-ms)")
    parser.add_argument("--litellm-cpu-ms", type=float, help="LiteLLM's CPU ms per request to compare with when it "
                        "is not run here (issue 19 measured 7.93 beside a real Kong)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    arguments = parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        runner.run(main(arguments))
