"""Templates in model names and options: what they read, and what a rendered value may contain."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from tollgate.plugins.proxy.templates import (Sources, TemplateError, check_url_template, has_templates, kinds_used,
                                              render, render_options)


def sources(headers=None, query="", captures=None) -> Sources:
    return Sources(CIMultiDict(headers or {}), query, captures or {})


def test_each_source_fills_its_template():
    src = sources({"X-Model": "gpt-4o"}, "tier=mini&tier=other", {"family": "claude", "1": "v2"})
    assert render("$(headers.x-model)", src) == "gpt-4o"
    assert render("gpt-4o-$(query_params.tier)", src) == "gpt-4o-mini"       # the first value
    assert render("$(uri_captures.family)-$(uri_captures.1)", src) == "claude-v2"
    assert render("plain-name", src) == "plain-name"


def test_missing_values_name_what_is_missing():
    with pytest.raises(TemplateError, match="header x-model"):
        render("$(headers.x-model)", sources())
    with pytest.raises(TemplateError, match="query parameter m"):
        render("$(query_params.m)", sources(query="m="))


@pytest.mark.parametrize("value", ["../../admin", "gpt-4o?x=1", "a b", "gpt#frag", "//evil.com/x", "-flag", "x" * 300,
                                   "evil.com/../x"])
def test_values_that_could_change_the_request_are_refused(value):
    with pytest.raises(TemplateError, match="not allowed"):
        render("$(headers.m)", sources({"m": value}))


def test_real_model_ids_pass():
    for value in ("gpt-4o-mini", "claude-3-5-sonnet@20240620", "meta-llama/Llama-3-8B", "anthropic.claude-v2:1",
                  "us.amazon.nova-pro-v1:0"):
        assert render("$(headers.m)", sources({"m": value})) == value


def test_url_options_take_one_segment_only():
    src = sources({"m": "gemini-2.0-flash", "bad": "a/b"})
    out = render_options({"upstream_url": "http://h/models/$(headers.m):generateContent", "max_tokens": 5,
                          "gemini": {"project_id": "$(headers.m)"}}, src)
    assert out == {"upstream_url": "http://h/models/gemini-2.0-flash:generateContent", "max_tokens": 5,
                   "gemini": {"project_id": "gemini-2.0-flash"}}
    with pytest.raises(TemplateError):
        render_options({"upstream_url": "http://h/models/$(headers.bad)"}, src)


def test_a_template_may_not_choose_the_host():
    check_url_template("http://mock:9000/v1/$(headers.m)/chat", "u")
    check_url_template("http://mock:9000/v1?deployment=$(query_params.d)", "u")
    for url in ("http://$(headers.host)/v1", "$(headers.scheme)://h/v1", "http://h.$(headers.x).com/v1",
                "http://user:$(headers.p)@h/v1", "http://$(headers.h)"):
        with pytest.raises(ValueError, match="scheme or host"):
            check_url_template(url, "u")


def test_detection():
    assert has_templates({"a": ["x", "$(headers.y)"]}) and not has_templates({"a": "$(nope.y)"})
    assert kinds_used({"n": "$(uri_captures.a)", "o": {"p": "$(headers.b)"}}) == {"uri_captures", "headers"}
