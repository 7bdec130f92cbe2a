"""Per-tool call limits: calls per window, per consumer or for everyone, counted in the route's store.

Each limit names the tools it covers (exposed names, ``*`` for all); a call reserves one unit in every window that
covers its tool, all or nothing, in one store round trip. Kong's ai-mcp-proxy has no such limits.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from ... import log
from ...store import StoreUnavailable, Window
from ..limits import count_refusal, now, window_seconds
from .jsonrpc import RATE_LIMITED, UPSTREAM_ERROR, JsonRpcError

logger = log.get("mcp")


@dataclass(frozen=True)
class CallLimit:
    tools: frozenset[str]
    limit: int
    seconds: int
    sliding: bool
    per_consumer: bool

    def covers(self, tool: str) -> bool:
        return "*" in self.tools or tool in self.tools


class CallLimits:
    def __init__(self, limits: list[CallLimit], scope: str, fail_open: bool):
        self.limits = limits
        self.scope = scope
        self.fail_open = fail_open

    @classmethod
    def from_config(cls, config: dict[str, Any], scope: str) -> "CallLimits":
        limits = [CallLimit(frozenset(item.get("tools") or ["*"]), int(item["limit"]),
                            window_seconds(str(item["window_size"])), item.get("window_type") != "fixed",
                            item.get("per", "consumer") == "consumer") for item in config.get("limits") or []]
        return cls(limits, scope, bool(config.get("fail_open")))

    def windows(self, tool: str, subject: str) -> list[Window]:
        # One hash tag per (route, subject, tool): the windows of one call live in one Redis Cluster slot.
        out = []
        for limit in self.limits:
            if limit.covers(tool):
                who = subject if limit.per_consumer else "*"
                tag = f"{{mcp:{self.scope}:{who}:{tool}}}"
                out.append(Window(f"{tag}:{limit.seconds}:{'s' if limit.sliding else 'f'}", limit.limit,
                                  limit.seconds, limit.sliding))
        return out

    async def admit(self, store: Any, tool: str, subject: str, ctx: Any) -> None:
        """Reserve one call of ``tool`` for ``subject``; raises `JsonRpcError` (429) when a window is full."""
        windows = self.windows(tool, subject)
        if not windows:
            return
        try:
            # same key, several limits: one counter; a call is final (never settled): no record kept
            reservation = await store.reserve(windows, 1, now(), settle=False)
        except StoreUnavailable as exc:
            log.event(logger, "store unavailable", logging.WARNING, plugin="tollgate-mcp", fail_open=self.fail_open,
                      error=str(exc))
            if self.fail_open:
                return
            count_refusal("tollgate-mcp", "store_unavailable", ctx)
            raise JsonRpcError(UPSTREAM_ERROR, "tollgate-mcp: its state store is unavailable and the route fails "
                                               "closed", status=503) from None
        if reservation.allowed:
            return
        count_refusal("tollgate-mcp", "tool_limit", ctx)
        denied = reservation.denied
        wait = reservation.retry_after if reservation.retry_after is not None else (denied.reset_at - now()
                                                                                    if denied else 1)
        retry = max(1, math.ceil(wait))
        size = next((w.size for w in windows if denied and w.key == denied.key and w.limit == denied.limit),
                    windows[0].size)
        raise JsonRpcError(RATE_LIMITED, f"tool {tool} call limit reached: {denied.limit if denied else '?'} calls "
                                         f"per {size:g} s; retry in {retry} s",
                           {"retryAfter": retry}, headers={"Retry-After": str(retry)})
