"""Parsing URLs into origins (the pool's keys) and request targets."""

from __future__ import annotations

import pytest

from tollgate.http1 import InvalidURL
from tollgate.http1.url import parse


def test_origins_authorities_and_targets():
    target = parse("https://API.example.com/v1/chat/completions?api-version=2024-10-21")
    assert target.origin == ("https", "api.example.com", 443) and target.tls
    assert target.authority == "api.example.com"
    assert target.path == "/v1/chat/completions?api-version=2024-10-21"
    local = parse("http://127.0.0.1:8080")
    assert (local.host, local.port, local.authority, local.path, local.tls) == ("127.0.0.1", 8080, "127.0.0.1:8080",
                                                                                "/", False)
    assert parse("http://[::1]:9000/x").authority == "[::1]:9000"
    assert parse("http://[::1]/x").host == "::1"
    assert parse("https://h:443/").authority == "h"


def test_targets_are_escaped_once():
    assert parse("http://h/models/gemini-2.0:generateContent").path == "/models/gemini-2.0:generateContent"
    assert parse("http://h/a%20b/c d?q=é").path == "/a%20b/c%20d?q=%C3%A9"


@pytest.mark.parametrize("url", ["ftp://h/x", "http:///x", "/relative", "http://user:pw@h/x", "http://h:99999/",
                                 "http://h:port/"])
def test_what_cannot_be_called_is_an_invalid_url(url):
    with pytest.raises(InvalidURL) as caught:
        parse(url)
    assert isinstance(caught.value, ValueError)
