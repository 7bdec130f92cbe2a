"""Route matching (a simplified ``traditional_compatible`` router) and the upstream URI
Kong computes from the match (``path_handling: v0`` and ``v1``, ``strip_path``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .config import Route

_UNRESERVED = re.compile(r"%(2[DdEe]|[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|5[Ff]|7[Ee])")


def normalize_path(raw: str) -> str:
    """Kong's ``normalize(path, true)``: decode percent-encoded unreserved characters,
    resolve dot segments, merge repeated slashes."""
    path = _UNRESERVED.sub(lambda m: unquote(m.group(0)), raw)
    segments: list[str] = []
    for seg in path.split("/")[1:]:
        if seg in ("", "."):
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    out = "/" + "/".join(segments)
    if path.endswith("/") and out != "/" or (path.endswith(("/.", "/..")) and out != "/"):
        out += "/"
    return out


@dataclass
class Match:
    route: Route
    prefix: str  # the part of the path the route's path matched ("" for no path)
    postfix: str  # what is left after it
    uri_captures: dict[str, Any] = field(default_factory=lambda: {"unnamed": {}, "named": {}})
    is_regex: bool = False


def _regex(path: str) -> re.Pattern:
    pattern = path[1:]
    pattern = re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", pattern)
    return re.compile(pattern)


def _host_matches(patterns: list[str], host: str) -> tuple[bool, bool]:
    host = host.lower()
    for p in patterns:
        p = p.lower()
        if ":" in p:
            if p == host:
                return True, True
            continue
        h = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if p == h:
            return True, True
        if p.startswith("*.") and h.endswith(p[1:]):
            return True, False
        if p.endswith(".*") and h.startswith(p[:-1]):
            return True, False
    return False, False


def match_route(routes: list[Route], method: str, path: str, host: str, headers: Any,
                protocol: str = "http") -> Match | None:
    """The route Kong would pick for a request (``path`` already normalised)."""
    best: tuple[tuple, Match] | None = None
    for r in routes:
        if protocol not in r.protocols:
            continue
        if r.methods and method.upper() not in [m.upper() for m in r.methods]:
            continue
        exact_host = False
        if r.hosts:
            ok, exact_host = _host_matches(r.hosts, host)
            if not ok:
                continue
        if r.headers:
            ok = True
            for name, values in r.headers.items():
                got = headers.get_all(name) if hasattr(headers, "get_all") else []
                if not any(v.lower() in [x.lower() for x in values] for v in got):
                    ok = False
                    break
            if not ok:
                continue
        m: Match | None = None
        weight: tuple = (0, 0, 0)
        if r.paths:
            for p in r.paths:
                if p.startswith("~"):
                    rm = _regex(p).match(path)
                    if rm:
                        named = {k: v for k, v in rm.groupdict().items() if v is not None}
                        unnamed = {0: rm.group(0)}
                        for i, g in enumerate(rm.groups(), start=1):
                            if g is not None:
                                unnamed[i] = g
                        captures = {"unnamed": unnamed, "named": named} if rm.groups() else \
                            {"unnamed": {}, "named": {}}
                        cand = Match(r, rm.group(0), path[rm.end():], captures, True)
                        w = (2, r.regex_priority, len(p))
                        if m is None or w > weight:
                            m, weight = cand, w
                elif path.startswith(p):
                    cand = Match(r, p, path[len(p):])
                    w = (1, 0, len(p))
                    if m is None or w > weight:
                        m, weight = cand, w
            if m is None:
                continue
        else:
            m = Match(r, "", path)
        categories = sum(1 for x in (r.paths, r.methods, r.hosts, r.headers) if x)
        key = (categories, exact_host, len(r.headers or {}), weight, len(r.methods or []) == 0)
        if best is None or key > best[0]:
            best = (key, m)
    return best[1] if best else None


def upstream_uri(match: Match, req_path: str, service_path: str | None) -> str:
    """The URI Kong sends upstream (without the query string)."""
    route = match.route
    base = service_path or "/"
    strip = route.strip_path and bool(match.prefix)
    postfix = match.postfix if strip else req_path
    if route.path_handling == "v1":
        if not strip:
            postfix = req_path
        if base == "/" :
            return postfix if postfix.startswith("/") else "/" + postfix
        if postfix == "" or postfix == "/":
            return base if postfix == "" else base.rstrip("/") + "/" if not base.endswith("/") else base
        return base + postfix if not base.endswith("/") or not postfix.startswith("/") else base + postfix[1:]
    # v0 (the default)
    if base.endswith("/"):
        if strip:
            if postfix == "":
                if base == "/":
                    return "/"
                if req_path.endswith("/"):
                    return base
                return base[:-1]
            if postfix.startswith("/"):
                return base[:-1] + postfix
            return base + postfix
        return base + req_path[1:]
    if strip:
        if postfix == "":
            if len(req_path) > 1 and req_path.endswith("/"):
                return base + "/"
            return base
        if postfix.startswith("/"):
            return base + postfix
        return base + "/" + postfix
    if req_path == "/":
        return base
    return base + req_path
