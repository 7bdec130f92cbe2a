"""The relay side of tollgate-proxy: check the request, call the provider, answer as OpenAI.

Streams are translated frame by frame as they arrive, so the first token reaches the
client when the provider sends it; usage is taken from the provider's own report.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from ... import estimate, log
from ...context import BodyError, RequestContext
from ...providers import UnknownProvider, driver_for
from ...providers.base import PRESERVE, ProviderError, Target
from ...providers.framing import sse_frame
from ...relay import upstream
from ...relay.errors import openai_error
from ..base import Policy

logger = log.get("proxy")

DONE = b"data: [DONE]\n\n"


class RequestRejected(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


class ProxyPolicy(Policy):
    def __init__(self, config: dict[str, Any], plugin: str):
        super().__init__(config, plugin)
        model = config.get("model") or {}
        self.route_type: str = config["route_type"]
        self.target = Target(provider=model.get("provider", "openai"), model=model.get("name"),
                             options=model.get("options") or {}, auth=config.get("auth") or {})
        self.timeout = float(config.get("timeout") or 60)

    async def before(self, ctx: RequestContext) -> web.StreamResponse | None:
        try:
            ctx.meta["request"] = self._checked_request(ctx)
        except RequestRejected as exc:
            return openai_error(exc.status, exc.message, code=exc.code, param=exc.param)
        return None

    def _checked_request(self, ctx: RequestContext) -> dict[str, Any]:
        limit = self.config.get("max_request_body_size") or 1048576
        if len(ctx.body) > limit:
            raise RequestRejected(413, f"request body is {len(ctx.body)} bytes, over the limit of {limit}",
                                  "request_too_large")
        content_type = ctx.headers.get("content-type", "")
        if self.route_type != PRESERVE and "json" not in content_type.lower():
            raise RequestRejected(415, f"expected an application/json body, got {content_type or 'no content type'}",
                                  "unsupported_media_type")
        try:
            body = ctx.json()
        except BodyError as exc:
            raise RequestRejected(400, str(exc), "invalid_json") from None
        if not isinstance(body, dict):
            raise RequestRejected(400, "request body must be a JSON object", "invalid_json")
        requested = body.get("model")
        if self.target.model and requested not in (None, "", self.target.model):
            raise RequestRejected(400, f"model '{requested}' is not available on this route; it serves "
                                       f"'{self.target.model}'", "model_not_allowed", "model")
        if not self.target.model and not requested:
            raise RequestRejected(400, "the request must name a model", "model_required", "model")
        stream = bool(body.get("stream"))
        policy = self.config.get("response_streaming", "allow")
        if stream and policy == "deny":
            raise RequestRejected(400, "streaming is not allowed on this route", "streaming_denied", "stream")
        return {"body": body, "stream": stream or policy == "always",
                "client_wants_usage": bool((body.get("stream_options") or {}).get("include_usage"))}

    async def serve(self, ctx: RequestContext, request: web.Request) -> web.StreamResponse:
        checked = ctx.meta["request"]
        try:
            driver = driver_for(self.target.provider)
            upstream_request = driver.build_request(self.route_type, checked["body"], self.target, checked["stream"])
        except UnknownProvider as exc:
            return openai_error(500, f"provider is not usable: {exc}", "server_error", "misconfigured")
        except ProviderError as exc:  # the request cannot be expressed for this provider
            return self._error_response(exc)
        ctx.meta["provider"] = self.target.provider
        ctx.meta["model"] = self.target.model or checked["body"].get("model")
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(self.timeout, 10), sock_read=self.timeout)
        try:
            async with upstream.session().request(upstream_request.method, upstream_request.url,
                                                  headers=upstream_request.headers, data=upstream_request.body,
                                                  timeout=timeout) as answer:
                if answer.status >= 400:
                    error = driver.parse_error(answer.status, answer.headers, await answer.read())
                    return self._error_response(error)
                if checked["stream"]:
                    return await self._relay_stream(ctx, request, driver, answer, checked, started)
                data, usage = driver.parse_response(self.route_type, await answer.read(), self.target)
                if usage is None:
                    usage = estimate.usage_from_text(ctx, self.route_type, ctx.meta["model"],
                                                     estimate.generated_text(data))
        except asyncio.TimeoutError:
            return openai_error(504, f"the provider did not answer within {self.timeout:g} s", "timeout",
                                "upstream_timeout")
        except aiohttp.ClientError as exc:
            return openai_error(502, f"the provider could not be reached: {type(exc).__name__}", "api_error",
                                "upstream_unreachable")
        except ProviderError as exc:
            return self._error_response(exc)
        ctx.usage = usage
        ctx.meta["latency_ms"] = (time.monotonic() - started) * 1000
        return web.Response(status=200, body=orjson.dumps(data), content_type="application/json",
                            headers=self._headers(ctx))

    async def _relay_stream(self, ctx: RequestContext, request: web.Request, driver: Any,
                            answer: aiohttp.ClientResponse, checked: dict[str, Any], started: float) -> web.StreamResponse:
        decoder = driver.stream_decoder(self.route_type, self.target)
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                           "Cache-Control": "no-cache", **self._headers(ctx)})
        await response.prepare(request)
        keep_usage_chunk = checked["client_wants_usage"]
        generated: list[str] = []
        try:
            async for data in answer.content.iter_any():
                chunks = decoder.feed(data)
                if chunks and "ttft_ms" not in ctx.meta:
                    ctx.meta["ttft_ms"] = (time.monotonic() - started) * 1000
                await _write_chunks(response, chunks, keep_usage_chunk, generated)
            await _write_chunks(response, decoder.close(), keep_usage_chunk, generated)
            await response.write(DONE)
        except ProviderError as exc:
            await response.write(sse_frame(orjson.dumps({"error": {"message": exc.message, "type": exc.type,
                                                                    "code": exc.code}})))
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, asyncio.TimeoutError) as exc:
            log.event(logger, "provider stream broke", 30, error=type(exc).__name__)
            await response.write(sse_frame(orjson.dumps({"error": {"message": "the provider stream ended early",
                                                                    "type": "api_error", "code": "upstream_broken"}})))
        except ConnectionResetError:
            ctx.meta["client_disconnected"] = True  # leaving the block closes the upstream call
        finally:
            # A stream cut short never carries the provider's usage: charge what was generated.
            ctx.usage = decoder.usage or estimate.usage_from_text(ctx, self.route_type, ctx.meta["model"],
                                                                  "".join(generated))
            ctx.meta["latency_ms"] = (time.monotonic() - started) * 1000
        return response

    def _headers(self, ctx: RequestContext) -> dict[str, str]:
        if not self.config.get("model_name_header", True):
            return ctx.response_headers
        return {**ctx.response_headers, "X-Kong-LLM-Model": f"{ctx.meta.get('provider')}/{ctx.meta.get('model')}"}

    @staticmethod
    def _error_response(error: ProviderError) -> web.Response:
        headers = {"Retry-After": f"{error.retry_after:g}"} if error.retry_after is not None else None
        return openai_error(error.status, error.message, error.type, error.code, headers)


async def _write_chunks(response: web.StreamResponse, chunks: list[dict[str, Any]], keep_usage_chunk: bool,
                        generated: list[str]) -> None:
    for chunk in chunks:
        generated.append(estimate.generated_text(chunk))
        if not keep_usage_chunk and not chunk.get("choices") and chunk.get("usage"):
            continue  # we asked the provider for usage; this client did not
        if not keep_usage_chunk and "usage" in chunk:
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
        await response.write(sse_frame(orjson.dumps(chunk)))
