"""Azure OpenAI wire format: OpenAI's bodies under ``/openai/deployments/<deployment>/...?api-version=...``.

The deployment paths (``chat/completions``, ``completions``, ``embeddings``) are matched here ahead of the plain OpenAI
format (longer patterns win); the answers are the OpenAI format's, with Azure's additions: ``prompt_filter_results``
(top level of a JSON answer, and a first stream chunk with ``choices: []``, empty id and model, as Azure sends it),
``content_filter_results`` on each choice, and the deployment as the model when the body names none.

Validation (``MockLLM(validate=True)``) answers like Azure: 404 ``Resource not found`` without an ``api-version``
query parameter, 400 without ``messages`` / ``prompt`` / ``input``. Keys are not checked (like the OpenAI format;
``RecordedRequest.headers`` shows the ``api-key`` / ``Authorization`` sent). Errors are ``{"error": {"code",
"message"}}`` (the code is the status as a string, as Azure's gateway sends it); a 429 also gets ``retry-after-ms``
when Reply.retry_after is set.

Reply.extra keys read here:
  ``content_filter``  ``{category: severity}`` (e.g. ``{"violence": "medium"}``): the prompt is refused with Azure's
                      400 ``content_filter`` error (``innererror.content_filter_result``), the way a filtered prompt is
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson

from . import Call, Endpoint, Frames, MockError, register
from .openai import OpenAIFormat, _model_of

_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
_DEPLOYMENT = r"/openai/deployments/[^/]+"
_FILTERED_PROMPT = ("The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
                    "Please modify your prompt and retry. To learn more about our content filtering policies please "
                    "read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")
_MESSAGES = {
    401: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
         "active subscription and use a correct regional API endpoint for your resource.",
    404: "Resource not found",
    429: "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {version} have exceeded "
         "token rate limit of your current OpenAI S0 pricing tier. Please retry after {retry} seconds. Please go here: "
         "https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
}


def _filter_results(severities: Mapping[str, str] | None = None) -> dict[str, Any]:
    severities = severities or {}
    return {name: {"filtered": severities.get(name, "safe") not in ("safe", "low"),
                   "severity": severities.get(name, "safe")} for name in _CATEGORIES}


class AzureFormat(OpenAIFormat):
    name = "azure"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(self, "POST", None, "chat", pattern=_DEPLOYMENT + r"/chat/completions$", render=self.chat,
                     render_stream=self.chat_stream, validate=self.validate_chat, model_of=_model_of),
            Endpoint(self, "POST", None, "completions", pattern=_DEPLOYMENT + r"/completions$",
                     render=self.completions, render_stream=self.completions_stream,
                     validate=self.validate_completions, model_of=_model_of),
            Endpoint(self, "POST", None, "embeddings", pattern=_DEPLOYMENT + r"/embeddings$", render=self.embeddings,
                     validate=self.validate_embeddings, model_of=_model_of, is_stream=lambda p, b: False),
        ]

    # ------------------------------------------------------------------------------------------------ errors
    def error_body(self, call: Call, status: int, error: str | Mapping[str, Any] | None) -> bytes:
        message = _MESSAGES.get(status)
        if message is None:
            try:
                message = HTTPStatus(status).phrase
            except ValueError:
                message = f"HTTP {status}"
        retry = call.reply.retry_after
        message = message.format(version=call.request.query.get("api-version", "2024-10-21"),
                                 retry=retry if retry is not None else 1)
        err: dict[str, Any] = {"code": str(status), "message": message}
        if isinstance(error, str):
            err["message"] = error
        elif error:
            err.update(error)
        return orjson.dumps({"error": err})

    def headers(self, call: Call) -> dict[str, str]:
        headers = {"apim-request-id": f"mock-{call.seq}", "x-ms-region": "Mock Region"}
        if call.reply.retry_after is not None:
            try:
                headers["retry-after-ms"] = str(int(float(call.reply.retry_after) * 1000))
            except ValueError:
                pass
        return headers

    # ------------------------------------------------------------------------------------------------ checks
    def _check(self, call: Call) -> None:
        if "api-version" not in call.request.query:
            raise MockError(404, "Resource not found", code="404")
        severities = call.reply.extra.get("content_filter")
        if severities:
            error = MockError(400, _FILTERED_PROMPT, type=None, param="prompt", code="content_filter",
                              innererror={"code": "ResponsibleAIPolicyViolation",
                                          "content_filter_result": _filter_results(severities)})
            error.fields["status"] = 400
            raise error

    def validate_chat(self, call: Call) -> None:  # type: ignore[override]
        self._check(call)
        messages = call.body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MockError(400, "'messages' is a required property", code="400")

    def validate_completions(self, call: Call) -> None:  # type: ignore[override]
        self._check(call)
        if "prompt" not in call.body:
            raise MockError(400, "'prompt' is a required property", code="400")

    def validate_embeddings(self, call: Call) -> None:  # type: ignore[override]
        self._check(call)
        if call.body.get("input") in (None, "", []):
            raise MockError(400, "'input' is a required property", code="400")

    # ------------------------------------------------------------------------------------------------ answers
    @staticmethod
    def _with_filters(data: dict[str, Any]) -> dict[str, Any]:
        data["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _filter_results()}]
        for choice in data.get("choices") or ():
            choice["content_filter_results"] = (
                {} if choice.get("finish_reason") == "content_filter" else _filter_results())
        return data

    def chat(self, call: Call) -> bytes:
        return orjson.dumps(self._with_filters(orjson.loads(super().chat(call))))

    def completions(self, call: Call) -> bytes:
        return orjson.dumps(self._with_filters(orjson.loads(super().completions(call))))

    def _stream(self, frames: Frames) -> Frames:
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _filter_results()}]}

        def annotate(frame: bytes) -> bytes:
            if not frame.startswith(b"data: {"):
                return frame
            data = orjson.loads(frame[6:])
            for choice in data.get("choices") or ():
                choice["content_filter_results"] = {} if choice.get("finish_reason") else _filter_results()
            return b"data: " + orjson.dumps(data) + b"\n\n"

        head = [b"data: " + orjson.dumps(first) + b"\n\n"] + [annotate(f) for f in frames.head]
        return Frames(head, [annotate(f) for f in frames.body], [annotate(f) for f in frames.tail])

    def chat_stream(self, call: Call) -> Frames:
        return self._stream(super().chat_stream(call))

    def completions_stream(self, call: Call) -> Frames:
        return self._stream(super().completions_stream(call))


FORMAT = register(AzureFormat())
