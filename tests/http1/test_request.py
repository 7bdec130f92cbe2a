"""The request head: exactly what the caller asked for, framed by the client, nothing injectable."""

from __future__ import annotations

import pytest

from tollgate.http1 import InvalidRequest
from tollgate.http1.request import head
from tollgate.http1.url import parse

TARGET = parse("https://api.example.com/v1/messages?beta=true")


def test_a_post_head():
    sent = head("POST", TARGET, {"Content-Type": "application/json", "x-api-key": "k"}, 17)
    assert sent == (b"POST /v1/messages?beta=true HTTP/1.1\r\nContent-Type: application/json\r\nx-api-key: k\r\n"
                    b"Host: api.example.com\r\nContent-Length: 17\r\n\r\n")


def test_framing_headers_are_the_clients_own_but_a_signed_host_is_kept():
    sent = head("POST", TARGET, {"Host": "bedrock-runtime.us-east-1.amazonaws.com", "Content-Length": "999",
                                 "Transfer-Encoding": "chunked"}, 3)
    assert sent == (b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: bedrock-runtime.us-east-1.amazonaws.com\r\n"
                    b"Content-Length: 3\r\n\r\n")


def test_bodiless_requests():
    assert head("GET", TARGET, None, None) == b"GET /v1/messages?beta=true HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
    assert head("DELETE", TARGET, {}, None).count(b"Content-Length") == 0
    assert b"Content-Length: 0\r\n" in head("POST", TARGET, None, None)


@pytest.mark.parametrize("method,headers", [
    ("POST", {"X-Evil": "a\r\nInjected: yes"}),
    ("POST", {"X-Evil": "a\nInjected: yes"}),
    ("POST", {"X-Evil": "a\rb"}),
    ("POST", {"Host": "h\r\n\r\nGET / HTTP/1.1"}),
    ("POST", {"Bad Name": "v"}),
    ("POST", {"Bad:Name": "v"}),
    ("GET /x HTTP/1.1\r\n", {}),
])
def test_what_would_change_the_framing_is_refused(method, headers):
    with pytest.raises(InvalidRequest):
        head(method, TARGET, headers, None)
