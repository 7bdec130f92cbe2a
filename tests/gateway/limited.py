"""A route with every limit on it, for the tests that try to break Tollgate (faults, failovers, soak).

Kong double -> real ``tollgate serve`` (key-auth, tollgate-token-limit, tollgate-cost-quota, tollgate-proxy; state in
Redis, time from a file the test owns) -> the mock LLM. `Chain` sends requests, records how each ended and how long
it took, and reads the token window and the budget straight from Redis, so a test can check that no request got
past a limit and that the counters hold exactly what the admitted requests used.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.clocks import CLOCK_PLUGIN_DIR, FileClock
from tests.gateway.routes import deck
from tollgate import tokens
from tollgate.plugins.token_limit.policy import window_key
from tollgate.store import RedisStore, Window

TOKEN_LIMIT_ID = "5f1c3b7e-0000-4000-8000-0000000fa017"
COST_QUOTA_ID = "5f1c3b7e-0000-4000-8000-0000000fb017"
MINUTE = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a minute and day boundary, so windows never roll mid-test
BODY = {"model": "gpt-4o-mini", "max_tokens": 100,
        "messages": [{"role": "user", "content": "Tell me about limits under faults."}]}
PROMPT = tokens.count_chat_prompt(BODY, "gpt-4o-mini")
RESERVED = PROMPT + 100   # reserve_max_tokens: the prompt and the whole max_tokens
USED = PROMPT + 40        # what the mock answers with (see `Chain.answer_normally`)
KEY = "alice-key"


@dataclass
class Outcome:
    status: int            # 0: the connection failed (no HTTP answer)
    seconds: float
    error: str = ""        # the OpenAI-style error code, or the client-side exception


@dataclass
class Chain:
    double: Any
    process: Any
    redis_url: str
    clock: FileClock
    token_limit: int
    budget_micros: int
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def consumer(self) -> str:
        return self.double.declarative.consumer_by_username("alice").id

    async def post(self, http: aiohttp.ClientSession, body: dict[str, Any] = BODY, *, timeout: float = 30,
                   url: str | None = None) -> Outcome:
        """One chat request; its outcome is recorded (a stream is read to its end)."""
        started = time.monotonic()
        try:
            async with http.post((url or self.double.url) + "/v1/chat/completions", json=body,
                                 headers={"apikey": KEY}, timeout=aiohttp.ClientTimeout(total=timeout)) as answer:
                raw = await answer.read()
                error = ""
                if answer.status != 200 and answer.content_type == "application/json":
                    error = str(((await answer.json()).get("error") or {}).get("code") or "")
                outcome = Outcome(answer.status, time.monotonic() - started, error)
                if answer.status == 200 and body.get("stream") and b"data: [DONE]" not in raw:
                    outcome.error = "stream without [DONE]"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            outcome = Outcome(0, time.monotonic() - started, repr(exc))
        self.outcomes.append(outcome)
        return outcome

    async def reached(self, count: int) -> None:
        """Until ``count`` requests have ended (a fault waits for its moment)."""
        while len(self.outcomes) < count:
            await asyncio.sleep(0.01)

    def admitted(self) -> int:
        return sum(1 for o in self.outcomes if o.status == 200)

    async def _observe(self, windows: list[Window]) -> float:
        store = RedisStore.from_url(self.redis_url, connect_timeout=2, socket_timeout=2, timeout=5)
        try:
            (state,) = await store.peek(windows, self.clock.now)
            return state.used
        finally:
            await store.close()

    async def tokens_used(self) -> float:
        key = window_key(TOKEN_LIMIT_ID, f"consumer:{self.consumer}", 60, "total_tokens")
        return await self._observe([Window(key, self.token_limit, 60, sliding=False)])

    async def spent_micros(self) -> float:
        from tollgate.plugins.cost_quota.budgets import Budget

        budget = Budget.from_config({"amount": self.budget_micros / 1e6, "period": "day"}, "UTC", {})
        window, _ = budget.window(COST_QUOTA_ID, f"consumer:{self.consumer}", self.clock.now)
        return await self._observe([window])

    async def settled(self, expect_tokens: float, timeout: float = 30,
                      expect_spent: float | None = None) -> tuple[float, float]:
        """The counters once they hold ``expect_tokens`` (and ``expect_spent``, when given; settlements may still
        be retried), or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            used = await self.tokens_used()
            if used == expect_tokens or time.monotonic() > deadline:
                spent = await self.spent_micros()
                if expect_spent is None or spent == expect_spent or time.monotonic() > deadline:
                    return used, spent
            await asyncio.sleep(0.25)


def limits_route(relay_url: str, llm_url: str, *, token_limit: int, budget_micros: int,
                 proxy_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    proxy = {"route_type": "llm/v1/chat",
             "model": {"provider": "openai", "name": "gpt-4o-mini", "options": {"upstream_url": llm_url}},
             "auth": {"header_name": "Authorization", "header_value": "Bearer sk-faults-secret-0123456789"},
             **(proxy_extra or {})}
    return deck(relay_url, {"/v1": [
        {"name": "key-auth", "config": {"key_names": ["apikey"]}},
        {"id": TOKEN_LIMIT_ID, "name": "tollgate-token-limit", "config": {
            "limits": [{"limit": token_limit, "window_size": "minute", "tokens_count_strategy": "total_tokens"}],
            "identifier": "consumer", "strategy": "redis", "window_type": "fixed", "reserve_max_tokens": True}},
        {"id": COST_QUOTA_ID, "name": "tollgate-cost-quota", "config": {
            "budgets": [{"name": "daily", "amount": budget_micros / 1e6, "period": "day"}], "strategy": "redis"}},
        {"name": "tollgate-proxy", "config": proxy}]},
        consumers=[{"username": "alice", "keyauth_credentials": [{"key": KEY}]}])


async def start_chain(tollgate_process, kong, redis_url: str, llm_url: str, clock: FileClock, *, token_limit: int,
                      budget_micros: int = 1_000_000_000, proxy_extra: dict[str, Any] | None = None,
                      process: Any = None, log_level: str = "warning", **kong_options: Any) -> Chain:
    if process is None:
        process = tollgate_process(plugins_dir=CLOCK_PLUGIN_DIR, redis_url=redis_url, log_level=log_level,
                                   env={"TOLLGATE_TEST_CLOCK_FILE": clock.path})
    config = limits_route(process.relay_url, llm_url, token_limit=token_limit, budget_micros=budget_micros,
                          proxy_extra=proxy_extra)
    double = await kong(config, process=process, **kong_options)
    return Chain(double, process, redis_url, clock, token_limit, budget_micros)
