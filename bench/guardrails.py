"""tollgate-guardrails: what the rules, the PII redaction and the output guard cost.

1. Rules only (templates, decorator, allow/deny on RE2 with normalisation): CPU per 1 KB prompt of the request
   stage (goal: at most 0.1 ms).
2. PII on a 1 KB prompt: p50 / p95 of the PII step (goal: p50 at most 5 ms), on prose, on a prompt with an email
   and a phone number, and on one dense with six entities; beside Presidio's own ``AnalyzerEngine`` (``no_op``
   NLP engine, the same recognizers) on the same texts.
3. Output guard on a stream: time to first token through the Kong double, Tollgate and a mock LLM pacing its
   chunks: proxy alone, + guardrails with rules and PII on the request, + the output guard (``pii.mode: BOTH``)
   (goal: the output guard adds at most 5 ms). With chunks cut mid-word, the guard holds the first word until
   the chunk that ends it: one chunk interval, the price of never letting part of an entity out.

4. Output guards on a stream, with a guard service that answers in 20 ms (the service of bench/guard_services.py,
   in its own process): what the sliding window adds per window over the service's own time (a bare POST of the
   same window on the same pooled session; goal: at most 1 ms), wall p50 and CPU per window.
5. ``during_call``: time to first token through the Kong double, Tollgate and a mock LLM whose first token comes
   after 10 ms or 50 ms, with that 20 ms guard service on the prompt: the proxy alone, the guard before the call,
   the guard during the call. Goal: p50 TTFT during the call within 2 ms of max(guard time, the proxy alone).

    python bench/guardrails.py [--quick] [--only 4,5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.common import cpu_seconds, mock_llm_process, tree  # noqa: E402
from tests.harness import KongDouble  # noqa: E402
from tests.harness.procs import TollgateServer  # noqa: E402
from tollgate import schema  # noqa: E402
from tollgate.context import RequestContext  # noqa: E402
from tollgate.plugins.guardrails.policy import GuardrailsPolicy  # noqa: E402
from tollgate.plugins.guardrails.schema import Schema  # noqa: E402
from tollgate.relay import upstream  # noqa: E402

FILLER = "The quick brown fox jumps over the lazy dog while we talk about gateways and tokens. "
DENY = [r"(?i)ignore (all )?(previous|prior) instructions", r"(?i)\bjailbreak\b", r"(?i)developer mode",
        r"(?i)do anything now", r"(?i)system prompt", r"(?i)\bpassword\b", r"(?i)drop\s+table", r"(?i)rm\s+-rf",
        r"(?i)reveal (your|the) (rules|instructions)", r"(?i)pretend (you are|to be)"]
ALLOW = [r"(?i)\b(gateway|token|fox)s?\b", r"(?i)\bweather\b"]
REALISTIC = "Hi, I am Jane. Write to jane.doe@example.org or call +1 415-555-0100 about my order. "
DENSE = ("Contact john.smith@example.com or call +1 415-555-0100, card 4111 1111 1111 1111, SSN 536-22-1245, "
         "IBAN GB82 WEST 1234 5698 7654 32, ip 192.168.10.20. ")


def kb(prefix: str, non_ascii: bool = False) -> str:
    text = (prefix + (FILLER.replace("fox", "fоx") if non_ascii else FILLER) * 14)[:1024]
    return text


def policy(**config: Any) -> GuardrailsPolicy:
    return GuardrailsPolicy(schema.validate(Schema, config), "tollgate-guardrails")


def ctx_for(body: dict[str, Any]) -> RequestContext:
    ctx = RequestContext(method="POST", path="/v1/chat/completions", query="", headers={}, body=b"", identity={},
                         policies={})
    ctx._json = body
    return ctx


async def stage_ms(p: GuardrailsPolicy, body: dict[str, Any], n: int) -> list[float]:
    """Wall time of the request stage per call, in ms (body already parsed, as the relay hands it over)."""
    out = []
    for _ in range(n):
        ctx = ctx_for(body)
        started = time.perf_counter()
        answer = await p.before(ctx)
        out.append((time.perf_counter() - started) * 1000)
        assert answer is None, answer
    return out


async def rules(n: int) -> None:
    print("1. rules only, CPU per 1 KB prompt (goal <= 0.1 ms)")
    guard = policy(deny_patterns=DENY, allow_patterns=ALLOW)
    shaped = policy(deny_patterns=DENY, allow_patterns=ALLOW,
                    templates=[{"name": "t", "template": '{"messages": [{"role": "user", "content": "{{q}}"}]}'}],
                    prompts={"prepend": [{"role": "system", "content": "Be brief."}]})
    cases = [("10 deny + 2 allow, ASCII", guard, {"messages": [{"role": "user", "content": kb("")}]}),
             ("same, non-ASCII (normalised)", guard, {"messages": [{"role": "user", "content": kb("", True)}]}),
             ("+ template + decorator", shaped, {"messages": "{template://t}", "properties": {"q": kb("")}})]
    for name, p, body in cases:
        started = time.process_time()
        await stage_ms(p, body, n)
        cpu = (time.process_time() - started) / n * 1000
        print(f"   {name:<32} {cpu:8.4f} ms")


def presidio_baseline() -> Any:
    """Presidio's AnalyzerEngine as documented for offline use: no_op NLP engine, the same recognizers."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, IbanRecognizer, IpRecognizer,
                                                          PhoneRecognizer, UsSsnRecognizer)

    from tollgate.plugins.guardrails.pii.engine import OfflineEmailRecognizer

    nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "no_op",
                                               "models": [{"lang_code": "en", "model_name": "none"}]}).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (OfflineEmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), UsSsnRecognizer(),
                       IbanRecognizer(), IpRecognizer()):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])


async def pii(n: int) -> None:
    print("2. PII on a 1 KB prompt, ms (goal p50 <= 5)")
    p = policy(pii={"enabled": True})
    await p._engine()
    baseline = presidio_baseline()
    print(f"   {'prompt':<22} {'p50':>7} {'p95':>7}   {'Presidio AnalyzerEngine p50':>28}")
    for name, text in [("prose, no PII", kb("")), ("email + phone", kb(REALISTIC)), ("six entities", kb(DENSE))]:
        times = sorted(await stage_ms(p, {"messages": [{"role": "user", "content": text}]}, n))
        base = []
        for _ in range(max(5, n // 10)):
            started = time.perf_counter()
            baseline.analyze(text=text, language="en", score_threshold=0.4)
            base.append((time.perf_counter() - started) * 1000)
        print(f"   {name:<22} {statistics.median(times):7.3f} {times[int(len(times) * 0.95)]:7.3f}   "
              f"{statistics.median(base):28.3f}")


REPLY = ("Sure. Here is a short summary of the gateway and its token accounting, written out word by word so the "
         "stream has some length; for questions write to jane.doe@example.org any time.")


def gateway_config(relay_url: str, mock_url: str, guardrails: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """One route per name: the proxy to the mock, with that guardrails config when there is one."""
    proxy = {"route_type": "llm/v1/chat", "auth": {"header_name": "Authorization", "header_value": "Bearer x"},
             "model": {"provider": "openai", "name": "gpt-4o-mini",
                       "options": {"upstream_url": mock_url + "/v1/chat/completions"}}}
    routes = [{"name": name, "paths": [f"/{name}/"], "strip_path": False,
               "plugins": [{"name": "tollgate-proxy", "config": proxy}]
               + ([{"name": "tollgate-guardrails", "config": guard}] if guard else [])}
              for name, guard in guardrails.items()]
    return {"_format_version": "3.0", "services": [{"name": "relay", "url": relay_url, "retries": 0, "routes": routes}]}


async def ttft(n: int) -> None:
    print("3. stream time to first token through Kong double + Tollgate + mock (5 ms between chunks), p50 ms")
    async with mock_llm_process(interval=0.005) as mock_url:
        proc = TollgateServer(log_level="warning")
        try:
            await proc.astart()
            guards = {"plain": None, "input": {"deny_patterns": DENY, "pii": {"enabled": True}},
                      "both": {"deny_patterns": DENY, "pii": {"enabled": True, "mode": "BOTH"}}}
            config = gateway_config(proc.relay_url, mock_url, guards)
            async with KongDouble(proc.entries("3.9", ["tollgate-proxy", "tollgate-guardrails"]), config) as kong, \
                    aiohttp.ClientSession() as http:
                body = orjson.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [
                    {"role": "user", "content": "Summarise, and my mail is john.smith@example.com, thanks"}]})
                words = len(REPLY.split())
                print(f"   {'chunks':<36} {'proxy':>7} {'+rules+PII in':>14} {'+output guard':>14}")
                for label, chunks in [("one word each (word + space)", None),
                                      ("cut mid-word (2 per word)", 2 * words)]:
                    async with http.put(mock_url + "/__mock/default", json={"content": REPLY, "chunks": chunks}):
                        pass
                    results: dict[str, list[float]] = {name: [] for name in guards}
                    for i in range(n + 3):                                # interleaved; 3 warm-ups
                        for name in guards:
                            first = await _first_token_ms(http, f"{kong.url}/{name}/v1/chat/completions", body)
                            if i >= 3:
                                results[name].append(first)
                    plain, inp, both = (statistics.median(results[name]) for name in guards)
                    print(f"   {label:<36} {plain:7.2f} {inp - plain:+14.2f} {both - inp:+14.2f}")
        finally:
            proc.cleanup()


async def filter_cost(n: int) -> None:
    """The answer filter alone, in process: what it adds to the first chunk and to a whole stream."""
    from tollgate.plugins.guardrails.answer import GuardrailsFilter, OutputRules
    from tollgate.plugins.guardrails.pii.redact import Redactor, Vault

    engine = await policy(pii={"enabled": True})._engine()
    vault = Vault()
    vault.placeholder("EMAIL_ADDRESS", "john.smith@example.com")
    pieces = [w + " " for w in REPLY.split()]

    def chunk(text: str) -> dict[str, Any]:
        return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}

    print("   in process, answer filter only:      first chunk p50 us   whole stream ms")
    for label, rules in [("restore", None), ("output guard + restore", OutputRules(engine, Redactor({}), 64, False))]:
        first, whole = [], []
        for _ in range(n):
            f = GuardrailsFilter(vault, rules, {})
            started = time.perf_counter()
            await f.feed(chunk(pieces[0]))
            first.append((time.perf_counter() - started) * 1e6)
            for piece in pieces[1:]:
                await f.feed(chunk(piece))
            await f.flush()
            whole.append((time.perf_counter() - started) * 1000)
        print(f"   {label:<36} {statistics.median(first):19.1f} {statistics.median(whole):17.3f}")


async def _first_token_ms(http: aiohttp.ClientSession, url: str, body: bytes) -> float:
    started = time.perf_counter()
    first = None
    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
        assert answer.status == 200, await answer.text()
        async for line in answer.content:
            if first is None and line.startswith(b"data: {") and b'"content":"' in line \
                    and b'"content":""' not in line:
                first = (time.perf_counter() - started) * 1000
    assert first is not None
    return first


def http_guard(url: str, **common: Any) -> dict[str, Any]:
    return {"name": "custom", "type": "http", "http": {"request": {"url": f"{url}/check"},
                                                       "response": {"block": "verdict.action",
                                                                    "block_values": ["BLOCK"]}}, **common}


async def stream_windows(n: int) -> None:
    """The sliding window in process: each window's feed waits for the service; what does Tollgate add?"""
    from bench.guard_services import DELAY, guard_service, pct
    from tollgate.plugins.guardrails.window import WindowedGuardsFilter

    text = (FILLER * 12)[:1000]
    pieces = [text[i:i + 8] for i in range(0, len(text), 8)]          # ~2 tokens per chunk

    def chunk(piece: str) -> dict[str, Any]:
        return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}

    async with guard_service() as url:
        guards = policy(guards=[http_guard(url, guarding_mode="OUTPUT", response_buffer_size=100)]).guards
        window = text[:200]                                           # what one check sends: window + context
        session = upstream.session()

        async def floor() -> float:
            started = time.perf_counter()
            async with session.post(f"{url}/check", json={"input": window}) as answer:
                await answer.read()
            return (time.perf_counter() - started) * 1000

        for _ in range(20):
            await floor()                                             # warm the pool
        windows, floors = [], []
        cpu_floor = time.process_time()
        for _ in range(n * 10):
            floors.append(await floor())
        cpu_floor = (time.process_time() - cpu_floor) / (n * 10) * 1000
        cpu = time.process_time()
        checks = 0
        for _ in range(n):
            flt = WindowedGuardsFilter(guards, {})
            for piece in pieces:
                started = time.perf_counter()
                out = await flt.feed(chunk(piece))
                if out:                                               # this feed closed a window and judged it
                    windows.append((time.perf_counter() - started) * 1000)
            await flt.flush()
            checks += flt.windows
        cpu = (time.process_time() - cpu) / checks * 1000
        await upstream.close()
    added = statistics.median(windows) - statistics.median(floors)
    print(f"4. output guard on a stream, 100-character windows, guard service answering in {DELAY * 1000:.0f} ms "
          f"({len(windows)} windows)")
    print(f"   per window, p50 / p90 ms: service alone (bare POST) {statistics.median(floors):.2f} / "
          f"{pct(floors, 0.9):.2f}; window judged {statistics.median(windows):.2f} / {pct(windows, 0.9):.2f}")
    print(f"   added by Tollgate, p50: {added:.2f} ms (goal <= 1 ms); CPU per window {cpu:.3f} ms "
          f"(bare POST {cpu_floor:.3f} ms, added {cpu - cpu_floor:.3f} ms)")


async def during_call(n: int) -> None:
    """TTFT with the input guard before the call and during it, against max(guard, provider) (end to end)."""
    from bench.guard_services import DELAY, guard_service

    async with guard_service() as guard_url, mock_llm_process() as mock_url:
        proc = TollgateServer(log_level="warning")
        try:
            await proc.astart()
            routes = {"plain": None, "before": {"guards": [http_guard(guard_url)]},
                      "during": {"guards": [http_guard(guard_url)], "during_call": True}}
            config = gateway_config(proc.relay_url, mock_url, routes)
            async with KongDouble(proc.entries("3.9", ["tollgate-proxy", "tollgate-guardrails"]), config) as kong, \
                    aiohttp.ClientSession() as http:
                body = orjson.dumps({"model": "gpt-4o-mini", "stream": True,
                                     "messages": [{"role": "user", "content": "Summarise the gateway, briefly."}]})
                guard = []
                for _ in range(n + 3):
                    started = time.perf_counter()
                    async with http.post(f"{guard_url}/check", json={"input": "Summarise the gateway, briefly."}) \
                            as answer:
                        await answer.read()
                    guard.append((time.perf_counter() - started) * 1000)
                guard_p50 = statistics.median(guard[3:])
                pids = tree(proc.pid)                                # Tollgate's CPU, not the mocks'
                print(f"5. during_call: stream TTFT p50 ms through Kong double + Tollgate + mock LLM; guard service "
                      f"{DELAY * 1000:.0f} ms (bare POST from here: p50 {guard_p50:.2f} ms). ideal = the proxy's own "
                      f"cost (proxy alone - provider alone) + max(guard, provider alone), the guard's time taken "
                      f"as the bare POST (a), or as it costs in the relay, guard before - proxy alone (b)")
                print(f"   {'provider':>8} {'provider alone':>14} {'proxy alone':>11} {'guard before':>12} "
                      f"{'guard during':>12} {'ideal a':>7} {'during-a':>8} {'ideal b':>7} {'during-b':>8}")
                for latency in (0.010, 0.050):
                    async with http.put(mock_url + "/__mock/default", json={"content": REPLY, "latency": latency}):
                        pass
                    results: dict[str, list[float]] = {name: [] for name in ["provider", *routes]}
                    cpu = {name: 0.0 for name in routes}
                    for i in range(n + 3):                            # interleaved; 3 warm-ups
                        first = await _first_token_ms(http, f"{mock_url}/v1/chat/completions", body)
                        if i >= 3:
                            results["provider"].append(first)
                        for name in routes:
                            before = cpu_seconds(pids)
                            first = await _first_token_ms(http, f"{kong.url}/{name}/v1/chat/completions", body)
                            if i >= 3:
                                results[name].append(first)
                                cpu[name] += cpu_seconds(pids) - before
                    alone, plain, before_, during = (statistics.median(v) for v in results.values())
                    ideal_a = plain - alone + max(guard_p50, alone)
                    ideal_b = plain - alone + max(before_ - plain, alone)
                    print(f"   {latency * 1000:>5.0f} ms {alone:14.2f} {plain:11.2f} {before_:12.2f} {during:12.2f} "
                          f"{ideal_a:7.2f} {during - ideal_a:+8.2f} {ideal_b:7.2f} {during - ideal_b:+8.2f}")
                    print("   Tollgate CPU per request (whole stream): " + ", ".join(
                        f"{name} {cpu[name] / n * 1000:.2f} ms" for name in routes))
        finally:
            proc.cleanup()


async def main(args: argparse.Namespace) -> None:
    n = 200 if args.quick else 1000
    only = {int(x) for x in args.only.split(",")} if args.only else {1, 2, 3, 4, 5}
    if 1 in only:
        await rules(n * 5)
    if 2 in only:
        await pii(n // 4)
    if 3 in only:
        await ttft(10 if args.quick else 25)
        await filter_cost(50 if args.quick else 200)
    if 4 in only:
        await stream_windows(10 if args.quick else 40)
    if 5 in only:
        await during_call(20 if args.quick else 100)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--only", help="which parts to run, e.g. 4,5")
    asyncio.run(main(parser.parse_args()))
