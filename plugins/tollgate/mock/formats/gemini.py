"""Google Gemini wire format: ``generateContent``, ``streamGenerateContent`` (SSE), ``embedContent``,
``batchEmbedContents`` and Google's error bodies, for the Generative Language API and Vertex AI paths alike.

Paths: ``.../models/{model}:{method}`` (``/v1beta/models/gemini-2.0-flash:generateContent``, or Vertex's
``/v1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:generateContent``); the model comes from the
path. ``:streamGenerateContent`` always answers as SSE (what ``?alt=sse`` asks for).

Shapes follow Google's documented bodies: a ``GenerateContentResponse`` with ``candidates[]`` (``content`` with
``role: "model"`` and ``parts`` of ``text`` / ``functionCall {name, args}``, ``finishReason``, ``index``),
``usageMetadata`` (``promptTokenCount``, ``candidatesTokenCount``, ``totalTokenCount``, ``cachedContentTokenCount``,
``thoughtsTokenCount``), ``modelVersion`` and ``responseId``. Function calls carry no ids and finish with ``STOP``
(Reply.finish_reason is sent verbatim, e.g. ``"SAFETY"``). The stream sends one ``data:`` frame per text piece
(running usage with the prompt count only), one frame with the function calls, then a last frame with an empty text
part, ``finishReason`` and the complete ``usageMetadata``. Errors are ``{"error": {"code", "message", "status"}}``
(plus a ``google.rpc.RetryInfo`` detail when Reply.retry_after is set); inside a stream, one ``data:`` frame with
that body.

Validation (``MockLLM(validate=True)``) answers 400 ``INVALID_ARGUMENT`` like the real API when ``contents`` is
missing or empty, a content has no parts or a role other than ``user``/``model``, or an embedding request has no
content.

Reply.extra keys read here:
  ``thoughts_tokens``   ``usageMetadata.thoughtsTokenCount`` (default: not sent; counted in ``totalTokenCount``)
  ``block_reason``      answer with no candidates and ``promptFeedback.blockReason`` set to this value
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson

from ..text import embedding
from . import Answer, Call, Endpoint, Format, Frames, MockError, register

_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
_MODEL_RE = re.compile(r"/models/([^/:]+):[A-Za-z]+$")

# status -> (message, google.rpc status); "{model}" is filled in
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("Request contains an invalid argument.", "INVALID_ARGUMENT"),
    401: ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
          "valid authentication credential.", "UNAUTHENTICATED"),
    403: ("The caller does not have permission", "PERMISSION_DENIED"),
    404: ("models/{model} is not found for API version v1beta, or is not supported for generateContent. Call "
          "ListModels to see the list of available models and their supported methods.", "NOT_FOUND"),
    409: ("The request conflicts with the current state.", "ABORTED"),
    429: ("Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"),
    499: ("The operation was cancelled.", "CANCELLED"),
    500: ("An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting", "INTERNAL"),
    501: ("Method not implemented.", "UNIMPLEMENTED"),
    503: ("The model is overloaded. Please try again later.", "UNAVAILABLE"),
    504: ("Deadline expired before operation could complete.", "DEADLINE_EXCEEDED"),
}


def _model_of(path: str, body: Any) -> str | None:
    match = _MODEL_RE.search(path)
    return match.group(1) if match else None


def _never(path: str, body: Any) -> bool:
    return False


def _always(path: str, body: Any) -> bool:
    return True


def _parts_text(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return " ".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"])


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {"input": arguments}
    return value if isinstance(value, dict) else {"input": value}


def _invalid(message: str) -> MockError:
    return MockError(400, message)


class GeminiFormat(Format):
    name = "gemini"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(self, "POST", None, "generate", pattern=r"/models/[^/:]+:generateContent$", render=self.generate,
                     validate=self.validate_generate, is_stream=_never, model_of=_model_of),
            Endpoint(self, "POST", None, "stream", pattern=r"/models/[^/:]+:streamGenerateContent$",
                     render=self.generate, render_stream=self.generate_stream, validate=self.validate_generate,
                     is_stream=_always, model_of=_model_of),
            Endpoint(self, "POST", None, "embed", pattern=r"/models/[^/:]+:embedContent$", render=self.embed,
                     validate=self.validate_embed, is_stream=_never, model_of=_model_of),
            Endpoint(self, "POST", None, "batch_embed", pattern=r"/models/[^/:]+:batchEmbedContents$",
                     render=self.batch_embed, validate=self.validate_batch_embed, is_stream=_never,
                     model_of=_model_of),
        ]

    # ------------------------------------------------------------------------------------------------ errors
    def error_body(self, call: Call, status: int, error: str | Mapping[str, Any] | None) -> bytes:
        message, rpc = _ERRORS.get(status, ("", "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"))
        if not message:
            try:
                message = HTTPStatus(status).phrase + "."
            except ValueError:
                message = f"HTTP {status}."
        message = message.replace("{model}", str(call.model))
        err: dict[str, Any] = {"code": status, "message": message, "status": rpc}
        retry = call.reply.retry_after
        if status == 429 and retry is not None:
            seconds = float(retry)
            delay = f"{int(seconds)}s" if seconds.is_integer() else f"{seconds}s"
            err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
        if isinstance(error, str):
            err["message"] = error
        elif error:
            err.update(error)
        return orjson.dumps({"error": err})

    # ------------------------------------------------------------------------------------------------ generate
    @staticmethod
    def validate_generate(call: Call) -> None:
        contents = call.body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _invalid("* GenerateContentRequest.contents: contents is not specified\n")
        for i, content in enumerate(contents):
            if not isinstance(content, dict) or not isinstance(content.get("parts"), list) or not content["parts"]:
                raise _invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n")
            if content.get("role", "user") not in ("user", "model"):
                raise _invalid(f"Please use a valid role: user, model. (contents[{i}].role: {content.get('role')!r})")

    def _answer(self, call: Call) -> Answer:
        body = call.body
        count = call.count
        tokens = 0
        echo = ""
        system = body.get("systemInstruction")
        if isinstance(system, dict):
            tokens += count(_parts_text(system.get("parts")))
        for content in body.get("contents") or ():
            if not isinstance(content, dict):
                continue
            parts = content.get("parts") or []
            text = _parts_text(parts)
            tokens += count(text) if text else 0
            for part in parts if isinstance(parts, list) else ():
                if not isinstance(part, dict):
                    continue
                for key in ("functionCall", "functionResponse"):
                    if isinstance(part.get(key), dict):
                        tokens += count(orjson.dumps(part[key]).decode())
            if content.get("role", "user") == "user" and text:
                echo = text
        config = body.get("generationConfig") if isinstance(body.get("generationConfig"), dict) else {}
        limit = config.get("maxOutputTokens")
        return call.answer(echo=echo, prompt_tokens=tokens,
                           max_tokens=limit if isinstance(limit, int) and not isinstance(limit, bool) else None)

    @staticmethod
    def _usage(call: Call, ans: Answer, final: bool = True) -> Any:
        if final and call.reply.usage is not None:
            return call.reply.usage
        usage: dict[str, Any] = {"promptTokenCount": ans.prompt_tokens}
        if not final:
            usage["totalTokenCount"] = ans.prompt_tokens
            return usage
        thoughts = int(call.reply.extra.get("thoughts_tokens") or 0)
        usage["candidatesTokenCount"] = ans.completion_tokens
        usage["totalTokenCount"] = ans.prompt_tokens + ans.completion_tokens + thoughts
        if ans.cached_tokens:
            usage["cachedContentTokenCount"] = ans.cached_tokens
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": ans.prompt_tokens}]
        return usage

    @staticmethod
    def _response(call: Call, candidates: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        response: dict[str, Any] = {"candidates": candidates, "usageMetadata": usage, "modelVersion": call.model,
                                    "responseId": f"mockresp{call.seq}"}
        block = call.reply.extra.get("block_reason")
        if block:
            response = {"promptFeedback": {"blockReason": block}, "usageMetadata": usage,
                        "modelVersion": call.model, "responseId": f"mockresp{call.seq}"}
        return response

    def generate(self, call: Call) -> bytes:
        ans = self._answer(call)
        parts: list[dict[str, Any]] = []
        if ans.text:
            parts.append({"text": ans.text})
        for tc in ans.tool_calls:
            parts.append({"functionCall": {"name": tc.name, "args": _args(tc.arguments_json)}})
        candidate = {"content": {"parts": parts or [{"text": ""}], "role": "model"},
                     "finishReason": call.finish_reason(_FINISH), "index": 0}
        return orjson.dumps(self._response(call, [candidate], self._usage(call, ans)))

    def generate_stream(self, call: Call) -> Frames:
        ans = self._answer(call)
        running = self._usage(call, ans, final=False)

        def frame(parts: list[dict[str, Any]], finish: str | None = None, usage: Any = running) -> bytes:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if finish is not None:
                candidate["finishReason"] = finish
            return b"data: " + orjson.dumps(self._response(call, [candidate], usage)) + b"\r\n\r\n"

        if call.reply.extra.get("block_reason"):
            return Frames([], [], [frame([], None, self._usage(call, ans))])
        body = [frame([{"text": piece}]) for piece in call.pieces(ans.text)] if ans.text else []
        if ans.tool_calls:
            body.append(frame([{"functionCall": {"name": tc.name, "args": _args(tc.arguments_json)}}
                               for tc in ans.tool_calls]))
        tail = [frame([{"text": ""}], call.finish_reason(_FINISH), self._usage(call, ans))]
        return Frames([], body, tail)

    # ------------------------------------------------------------------------------------------------ embeddings
    @staticmethod
    def _check_embed(request: Any, where: str, model: str | None) -> None:
        if not isinstance(request, dict) or not isinstance(request.get("content"), dict) \
                or not _parts_text(request["content"].get("parts")):
            raise _invalid(f"* {where}.content: content is not specified\n")
        named = request.get("model")
        if named is not None and model is not None and named not in (f"models/{model}", model) \
                and not str(named).endswith(f"/models/{model}"):
            raise _invalid(f"Model '{named}' in {where} does not match the model of the batch 'models/{model}'.")

    def validate_embed(self, call: Call) -> None:
        self._check_embed(call.body, "EmbedContentRequest", call.request.model)

    def validate_batch_embed(self, call: Call) -> None:
        requests = call.body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise _invalid("* BatchEmbedContentsRequest.requests: requests is not specified\n")
        for i, request in enumerate(requests):
            self._check_embed(request, f"BatchEmbedContentsRequest.requests[{i}]", call.request.model)

    @staticmethod
    def _vector(call: Call, request: dict[str, Any], i: int) -> dict[str, Any]:
        reply = call.reply
        if reply.embeddings:
            return {"values": list(reply.embeddings[i % len(reply.embeddings)])}
        dims = reply.dims or request.get("outputDimensionality") or call.mock.embedding_dims
        text = _parts_text((request.get("content") or {}).get("parts"))
        return {"values": embedding(text, int(dims)).tolist()}

    def embed(self, call: Call) -> bytes:
        answer: dict[str, Any] = {"embedding": self._vector(call, call.body, 0)}
        if call.reply.usage is not None:
            answer["usageMetadata"] = call.reply.usage
        return orjson.dumps(answer)

    def batch_embed(self, call: Call) -> bytes:
        vectors = [self._vector(call, request, i) for i, request in enumerate(call.body.get("requests") or ())]
        answer: dict[str, Any] = {"embeddings": vectors}
        if call.reply.usage is not None:
            answer["usageMetadata"] = call.reply.usage
        return orjson.dumps(answer)


FORMAT = register(GeminiFormat())
