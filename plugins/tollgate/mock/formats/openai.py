"""OpenAI wire format: chat.completion (+ chunk SSE), text_completion, embeddings list, models, error bodies.

Also serves OpenAI-compatible servers and Azure OpenAI (``/openai/deployments/<name>/chat/completions``: the model is
the deployment name when the body has none). Reply.extra keys read here: none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson

from ..text import embedding, embedding_base64, fragments
from . import Call, Endpoint, Format, Frames, MockError, register

_DEPLOYMENT_RE = re.compile(r"/deployments/([^/]+)/")
_FINGERPRINT = "fp_mock"
_DONE = b"data: [DONE]\n\n"
_MODEL_CREATED = 1700000000

# status -> (message, type, code); "{model}" / "{retry}" are filled in
_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided. You can find your API key in your account settings.",
          "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", None),
    404: ("The model `{model}` does not exist or you do not have access to it.", "invalid_request_error",
          "model_not_found"),
    408: ("Request timed out.", "timeout", None),
    413: ("Request too large.", "invalid_request_error", None),
    422: ("Unprocessable request.", "invalid_request_error", None),
    429: ("Rate limit reached for {model} on requests per min (RPM). Please try again in {retry}.", "requests",
          "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def _model_of(path: str, body: Any) -> str | None:
    if isinstance(body, dict):
        model = body.get("model")
        if isinstance(model, str):
            return model
    m = _DEPLOYMENT_RE.search(path)
    return m.group(1) if m else None


def _models_id(path: str, body: Any) -> str | None:
    return path.rsplit("/", 1)[-1]


def _message_text(content: Any) -> str:
    """Text of a message ``content``: a string, or the ``text`` of its content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


def _include_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and opts.get("include_usage") is True


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _require_model(call: Call) -> None:
    if call.request.model is None:
        raise MockError(400, "You must provide a model parameter.", param="model", code=None)


class OpenAIFormat(Format):
    name = "openai"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(self, "POST", "/chat/completions", "chat", render=self.chat, render_stream=self.chat_stream,
                     validate=self.validate_chat, model_of=_model_of),
            Endpoint(self, "POST", "/completions", "completions", render=self.completions,
                     render_stream=self.completions_stream, validate=self.validate_completions, model_of=_model_of),
            Endpoint(self, "POST", "/embeddings", "embeddings", render=self.embeddings,
                     validate=self.validate_embeddings, model_of=_model_of, is_stream=lambda p, b: False),
            Endpoint(self, "GET", "/models", "models", render=self.models, is_stream=lambda p, b: False),
            Endpoint(self, "GET", None, "model", pattern=r"/models/[^/]+$", render=self.model,
                     is_stream=lambda p, b: False, model_of=_models_id),
        ]

    # ------------------------------------------------------------------------------------------------ errors
    def error_body(self, call: Call, status: int, error: str | Mapping[str, Any] | None) -> bytes:
        message, etype, code = _ERRORS.get(status, ("", "server_error" if status >= 500 else
                                                    "invalid_request_error", None))
        if not message:
            try:
                message = HTTPStatus(status).phrase + "."
            except ValueError:
                message = f"HTTP {status}."
        if "{" in message:
            retry = call.reply.retry_after
            if isinstance(retry, float) and retry.is_integer():
                retry = int(retry)
            message = message.format(model=call.model, retry=f"{retry}s" if retry is not None else "20s")
        err: dict[str, Any] = {"message": message, "type": etype, "param": None, "code": code}
        if isinstance(error, str):
            err["message"] = error
        elif error:
            err.update(error)
        return orjson.dumps({"error": err})

    def stream_error(self, call: Call, error: str | Mapping[str, Any] | None) -> bytes:
        return b"data: " + self.error_body(call, 500, error) + b"\n\n"

    def headers(self, call: Call) -> dict[str, str]:
        return {"x-request-id": f"req_mock{call.seq}"}

    # ------------------------------------------------------------------------------------------------ chat
    @staticmethod
    def validate_chat(call: Call) -> None:
        body = call.body
        _require_model(call)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MockError(400, "Missing required parameter: 'messages'.", param="messages",
                            code="missing_required_parameter" if messages is None else "empty_array")

    def _chat_answer(self, call: Call):
        body = call.body
        messages = body.get("messages")
        echo = ""
        prompt_tokens = 0
        if isinstance(messages, list):
            count = call.count
            for msg in messages:
                if not isinstance(msg, dict):
                    continue
                text = _message_text(msg.get("content"))
                prompt_tokens += count(text) if text else 0
                for tc in msg.get("tool_calls") or ():
                    if isinstance(tc, dict) and isinstance(tc.get("function"), dict):
                        prompt_tokens += count(str(tc["function"].get("arguments", "")))
                if msg.get("role") == "user":
                    echo = text
        return call.answer(echo=echo, prompt_tokens=prompt_tokens, max_tokens=_max_tokens(body))

    @staticmethod
    def _usage(call: Call, ans) -> Any:
        if call.reply.usage is not None:
            return call.reply.usage
        return {
            "prompt_tokens": ans.prompt_tokens,
            "completion_tokens": ans.completion_tokens,
            "total_tokens": ans.total_tokens,
            "prompt_tokens_details": {"cached_tokens": ans.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }

    def chat(self, call: Call) -> bytes:
        ans = self._chat_answer(call)
        message: dict[str, Any] = {"role": "assistant", "content": ans.text, "refusal": None, "annotations": []}
        if ans.tool_calls:
            message["tool_calls"] = [
                {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments_json}}
                for tc in ans.tool_calls
            ]
        return orjson.dumps({
            "id": f"chatcmpl-mock{call.seq}",
            "object": "chat.completion",
            "created": call.created,
            "model": call.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": call.finish_reason()}],
            "usage": self._usage(call, ans),
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        })

    def chat_stream(self, call: Call) -> Frames:
        ans = self._chat_answer(call)
        include_usage = _include_usage(call.body)
        prefix = (b'data: {"id":"chatcmpl-mock' + str(call.seq).encode()
                  + b'","object":"chat.completion.chunk","created":' + str(call.created).encode()
                  + b',"model":' + orjson.dumps(call.model)
                  + b',"service_tier":"default","system_fingerprint":"' + _FINGERPRINT.encode() + b'","choices":')
        suffix = b',"usage":null}\n\n' if include_usage else b"}\n\n"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return prefix + b"[" + orjson.dumps(choice) + b"]" + suffix

        head = [chunk({"role": "assistant", "content": "" if ans.text is not None else None, "refusal": None})]
        body = [chunk({"content": piece}) for piece in call.pieces(ans.text)] if ans.text is not None else []
        for i, tc in enumerate(ans.tool_calls):
            body.append(chunk({"tool_calls": [{"index": i, "id": tc.id, "type": "function",
                                               "function": {"name": tc.name, "arguments": ""}}]}))
            for frag in fragments(tc.arguments_json):
                body.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}))
        tail = [chunk({}, call.finish_reason())]
        if include_usage:
            tail.append(prefix + b"[]" + b',"usage":' + orjson.dumps(self._usage(call, ans)) + b"}\n\n")
        tail.append(_DONE)
        return Frames(head, body, tail)

    # ------------------------------------------------------------------------------------------------ completions
    @staticmethod
    def validate_completions(call: Call) -> None:
        _require_model(call)
        if "prompt" not in call.body:
            raise MockError(400, "Missing required parameter: 'prompt'.", param="prompt",
                            code="missing_required_parameter")

    @staticmethod
    def _completion_answer(call: Call):
        prompt = call.body.get("prompt")
        count = call.count
        echo = ""
        tokens = 0
        if isinstance(prompt, str):
            echo, tokens = prompt, count(prompt)
        elif isinstance(prompt, list):
            for item in prompt:
                if isinstance(item, str):
                    echo = item
                    tokens += count(item)
                elif isinstance(item, int):
                    tokens += 1
                elif isinstance(item, list):
                    tokens += len(item)
        return call.answer(echo=echo, prompt_tokens=tokens, max_tokens=_max_tokens(call.body))

    @staticmethod
    def _completion_usage(call: Call, ans) -> Any:
        if call.reply.usage is not None:
            return call.reply.usage
        return {"prompt_tokens": ans.prompt_tokens, "completion_tokens": ans.completion_tokens,
                "total_tokens": ans.total_tokens}

    def completions(self, call: Call) -> bytes:
        ans = self._completion_answer(call)
        return orjson.dumps({
            "id": f"cmpl-mock{call.seq}",
            "object": "text_completion",
            "created": call.created,
            "model": call.model,
            "system_fingerprint": _FINGERPRINT,
            "choices": [{"text": ans.text or "", "index": 0, "logprobs": None,
                         "finish_reason": call.finish_reason()}],
            "usage": self._completion_usage(call, ans),
        })

    def completions_stream(self, call: Call) -> Frames:
        ans = self._completion_answer(call)
        include_usage = _include_usage(call.body)
        prefix = (b'data: {"id":"cmpl-mock' + str(call.seq).encode() + b'","object":"text_completion","created":'
                  + str(call.created).encode() + b',"model":' + orjson.dumps(call.model)
                  + b',"system_fingerprint":"' + _FINGERPRINT.encode() + b'","choices":')
        suffix = b',"usage":null}\n\n' if include_usage else b"}\n\n"

        def chunk(text: str, finish: str | None = None) -> bytes:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
            return prefix + b"[" + orjson.dumps(choice) + b"]" + suffix

        body = [chunk(piece) for piece in call.pieces(ans.text)]
        tail = [chunk("", call.finish_reason())]
        if include_usage:
            tail.append(prefix + b'[],"usage":' + orjson.dumps(self._completion_usage(call, ans)) + b"}\n\n")
        tail.append(_DONE)
        return Frames([], body, tail)

    # ------------------------------------------------------------------------------------------------ embeddings
    @staticmethod
    def validate_embeddings(call: Call) -> None:
        _require_model(call)
        body = call.body
        inp = body.get("input")
        if inp is None:
            raise MockError(400, "Missing required parameter: 'input'.", param="input",
                            code="missing_required_parameter")
        if inp == "" or inp == []:
            raise MockError(400, "'input' cannot be an empty string or array.", param="input", code=None)
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise MockError(400, f"Invalid value for 'encoding_format': {fmt!r}. Supported values are: "
                                 "'float' and 'base64'.", param="encoding_format", code="invalid_value")
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
            raise MockError(400, "'dimensions' must be a positive integer.", param="dimensions", code=None)

    def embeddings(self, call: Call) -> bytes:
        body = call.body
        inp = body.get("input")
        if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)):
            inputs = [inp]
        elif isinstance(inp, list):
            inputs = inp
        else:
            inputs = [str(inp)]
        reply = call.reply
        dims = reply.dims or body.get("dimensions") or call.mock.embedding_dims
        b64 = body.get("encoding_format") == "base64"
        count = call.count
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                text = item
                tokens += count(item)
            elif isinstance(item, list):
                text = " ".join(map(str, item))
                tokens += len(item)
            else:
                text = str(item)
                tokens += 1
            if reply.embeddings:
                from array import array

                vec = array("f", reply.embeddings[i % len(reply.embeddings)])
            else:
                vec = embedding(text, dims)
            data.append({"object": "embedding", "index": i,
                         "embedding": embedding_base64(vec) if b64 else vec.tolist()})
        if reply.prompt_tokens is not None:
            tokens = reply.prompt_tokens
        usage = reply.usage if reply.usage is not None else {"prompt_tokens": tokens, "total_tokens": tokens}
        return orjson.dumps({"object": "list", "data": data, "model": call.model, "usage": usage})

    # ------------------------------------------------------------------------------------------------ models
    @staticmethod
    def _model_obj(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": _MODEL_CREATED, "owned_by": "tollgate-mock"}

    def models(self, call: Call) -> bytes:
        return orjson.dumps({"object": "list", "data": [self._model_obj(m) for m in call.mock.models]})

    def model(self, call: Call) -> bytes:
        model_id = call.request.model or ""
        if model_id not in call.mock.models:
            raise MockError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return orjson.dumps(self._model_obj(model_id))


FORMAT = register(OpenAIFormat())
