"""Scripting (queue, rules, default), recording, the thread runner, the CLI and its admin API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest

from tollgate.mock import MockLLM, Reply
from tollgate.mock.formats import Endpoint, Format, load

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


async def content_of(http, url, body=CHAT, path="/v1/chat/completions"):
    async with http.post(url + path, json=body) as resp:
        data = await resp.json()
        return resp.status, (data["choices"][0]["message"]["content"] if resp.status == 200 else data)


async def test_queue_is_fifo_then_default(mock, http):
    mock.enqueue(Reply(content="one"), Reply(content="two"))
    mock.enqueue(Reply(content="three"), times=2)
    assert mock.pending == 4
    got = [(await content_of(http, mock.url))[1] for _ in range(5)]
    assert got == ["one", "two", "three", "three", "hi"]
    mock.default = Reply(content="fixed")
    assert (await content_of(http, mock.url))[1] == "fixed"


async def test_queue_filters_by_path_model_endpoint_and_predicate(mock, http):
    mock.enqueue(Reply(content="for-mini"), model="gpt-4o-mini")
    mock.enqueue(Reply(content="for-openai-prefix"), path=re.compile(r"^/openai/"))
    mock.enqueue(Reply(content="for-completions"), endpoint="completions")
    mock.enqueue(Reply(content="for-header"), match=lambda r: r.headers.get("x-tenant") == "acme")
    assert (await content_of(http, mock.url))[1] == "hi"  # nothing matches a plain gpt-4o chat
    assert (await content_of(http, mock.url, path="/openai/v1/chat/completions"))[1] == "for-openai-prefix"
    assert (await content_of(http, mock.url, body={**CHAT, "model": "gpt-4o-mini"}))[1] == "for-mini"
    async with http.post(mock.url + "/v1/completions", json={"model": "m", "prompt": "p"}) as resp:
        assert (await resp.json())["choices"][0]["text"] == "for-completions"
    async with http.post(mock.url + "/v1/chat/completions", json=CHAT, headers={"X-Tenant": "acme"}) as resp:
        assert (await resp.json())["choices"][0]["message"]["content"] == "for-header"
    assert mock.pending == 0


async def test_rules_and_callable_replies(mock, http):
    rule = mock.add_rule(Reply(status=503), model="broken-model")
    mock.add_rule(lambda rec: Reply(content=f"you said {rec.json['messages'][-1]['content']}"),
                  path="/chat/completions", model="echo-model")
    for _ in range(2):
        status, _ = await content_of(http, mock.url, body={**CHAT, "model": "broken-model"})
        assert status == 503
    assert (await content_of(http, mock.url, body={**CHAT, "model": "echo-model"}))[1] == "you said hi"
    # the queue wins over rules
    mock.enqueue(Reply(content="queued"), model="broken-model")
    assert (await content_of(http, mock.url, body={**CHAT, "model": "broken-model"}))[1] == "queued"
    rule.remove()
    assert (await content_of(http, mock.url, body={**CHAT, "model": "broken-model"}))[0] == 200
    mock.default = lambda rec: Reply(content=rec.path)
    assert (await content_of(http, mock.url, path="/x/chat/completions"))[1] == "/x/chat/completions"


async def test_reply_text_option_and_reset(http):
    async with MockLLM(reply_text="canned", default=Reply(content=None, prompt_tokens=3)) as mock:
        status, content = await content_of(http, mock.url)
        assert content == "canned"
        mock.enqueue(Reply(content="x"))
        mock.add_rule(Reply(status=500))
        mock.default = Reply(content="changed")
        mock.reset()
        assert mock.pending == 0 and mock.requests == []
        assert (await content_of(http, mock.url))[1] == "canned"


async def test_recording(mock, http):
    async with http.post(mock.url + "/v1/chat/completions?trace=1&x=", json=CHAT,
                         headers={"X-Custom": "v"}) as resp:
        await resp.read()
    async with http.post(mock.url + "/v1/chat/completions", data=b"\x00binary") as resp:
        assert resp.status == 400
    async with http.get(mock.url + "/v1/models") as resp:
        await resp.read()
    reqs = mock.requests
    assert len(reqs) == 3 and mock.request_count == 3
    first = reqs[0]
    assert first.method == "POST" and first.path == "/v1/chat/completions"
    assert first.query == {"trace": "1", "x": ""} and first.query_string == "trace=1&x="
    assert first.headers["x-custom"] == "v"
    assert json.loads(first.body) == CHAT and first.json == CHAT
    assert first.model == "gpt-4o" and first.endpoint == "openai.chat" and first.stream is False
    assert first.status == 200 and first.reply is not None
    assert first.received_at <= first.headers_at <= first.done_at
    assert reqs[1].body == b"\x00binary" and reqs[1].json is None
    assert reqs[2].method == "GET" and reqs[2].body == b""
    assert mock.last_request is reqs[2]
    d = first.to_dict()
    assert d["json"] == CHAT and d["headers"]["X-Custom"] == "v"
    mock.clear()
    assert mock.requests == [] and mock.request_count == 0


async def test_recording_is_bounded(http):
    async with MockLLM(record_limit=5) as mock:
        for i in range(12):
            await content_of(http, mock.url, body={**CHAT, "messages": [{"role": "user", "content": str(i)}]})
        assert [r.json["messages"][0]["content"] for r in mock.requests] == ["7", "8", "9", "10", "11"]
        assert mock.request_count == 12
    async with MockLLM(record_limit=0) as mock:
        await content_of(http, mock.url)
        assert mock.requests == [] and mock.request_count == 1


def test_thread_runner_sync_client():
    with MockLLM.running_in_thread() as mock:
        assert mock.url.startswith("http://127.0.0.1:")

        def post(body):
            req = urllib.request.Request(mock.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())

        mock.enqueue(Reply(content="from the test thread"))
        assert post(CHAT)["choices"][0]["message"]["content"] == "from the test thread"
        assert post(CHAT)["choices"][0]["message"]["content"] == "hi"

        # scripting from several threads at once while requests flow
        def script(n):
            for _ in range(50):
                mock.enqueue(Reply(content=f"t{n}"))

        threads = [threading.Thread(target=script, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seen = {post(CHAT)["choices"][0]["message"]["content"] for _ in range(200)}
        assert seen == {"t0", "t1", "t2", "t3"} and mock.pending == 0
        assert len(mock.requests) == 202
        url = mock.url
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/v1/models", timeout=2)


def test_sync_openai_client_in_thread():
    import openai

    with MockLLM.running_in_thread(reply_text="threaded") as mock:
        client = openai.OpenAI(base_url=mock.url + "/v1", api_key="x", max_retries=0)
        resp = client.chat.completions.create(model="gpt-4o", messages=CHAT["messages"])
        assert resp.choices[0].message.content == "threaded"
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=CHAT["messages"], stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "threaded"


class EchoPathFormat(Format):
    """A toy format, to show the extension contract: one route, its own error body and framing."""

    name = "toy"

    def endpoints(self):
        return [Endpoint(self, "POST", "/toy/generate", "generate",
                         render=lambda call: json.dumps({"out": call.answer(echo=call.body.get("q", "")).text})
                         .encode())]

    def error_body(self, call, status, error):
        return json.dumps({"toy_error": error if isinstance(error, str) else status}).encode()


async def test_a_new_format_plugs_in(http):
    from tollgate.mock.formats import register

    register(EchoPathFormat())
    assert [f.name for f in load(["openai", "toy"])] == ["openai", "toy"]
    async with MockLLM(formats=["openai", "toy"]) as mock:
        async with http.post(mock.url + "/api/toy/generate", json={"q": "ping"}) as resp:
            assert await resp.json() == {"out": "ping"}
        mock.enqueue(Reply.fail(418, "teapot"))
        async with http.post(mock.url + "/toy/generate", json={}) as resp:
            assert resp.status == 418 and await resp.json() == {"toy_error": "teapot"}
        assert mock.requests[0].endpoint == "toy.generate"
        assert (await content_of(http, mock.url))[1] == "hi"  # OpenAI still served


@pytest.fixture
def cli_server():
    env = {**os.environ, "TOLLGATE_MOCK_REPLY": "demo reply"}
    proc = subprocess.Popen([sys.executable, "-m", "tollgate.mock", "--host", "127.0.0.1", "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        yield proc, f"http://127.0.0.1:{m.group(1)}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def test_cli_and_admin_api(cli_server):
    proc, url = cli_server

    def call(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    assert call("POST", "/v1/chat/completions", CHAT)[1]["choices"][0]["message"]["content"] == "demo reply"
    assert call("POST", "/__mock/enqueue", {"reply": {"status": 429, "retry_after": 1},
                                           "path": "/chat/completions"}) == (200, {"ok": True, "pending": 1})
    assert call("POST", "/v1/chat/completions", CHAT)[0] == 429
    assert call("PUT", "/__mock/default", {"content": "new default"})[0] == 200
    assert call("POST", "/v1/chat/completions", CHAT)[1]["choices"][0]["message"]["content"] == "new default"
    status, reqs = call("GET", "/__mock/requests?limit=2")
    assert status == 200 and [r["status"] for r in reqs] == [429, 200] and reqs[0]["json"] == CHAT
    assert call("POST", "/__mock/enqueue", {"reply": {"bogus": 1}})[0] == 400
    assert call("POST", "/__mock/reset", {})[0] == 200
    assert call("GET", "/__mock/health") == (200, {"ok": True, "requests": 0, "pending": 0})
    assert call("POST", "/v1/chat/completions", CHAT)[1]["choices"][0]["message"]["content"] == "demo reply"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
