"""The modelled request: what nginx and Kong hold for one request (``ngx.var``,
``ngx.req``, ``ngx.ctx``, ``kong.ctx.shared``, the upstream target, the response)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from .config import Consumer, KeyAuthCredential, PluginConfig, Route, Service
from .headers import Headers
from .router import Match


def new_request_id() -> str:
    return os.urandom(16).hex()


def decode_args(query: str) -> dict[str, Any]:
    """``ngx.req.get_uri_args`` / ``ngx.decode_args``: ``a=1&a=2`` -> ``{"a": ["1", "2"]}``,
    ``flag`` -> ``True``, ``a=`` -> ``""``."""
    out: dict[str, Any] = {}
    if not query:
        return out
    for part in query.split("&"):
        if part == "":
            continue
        if "=" in part:
            k, v = part.split("=", 1)
            key, value = unquote_plus(k), unquote_plus(v)
        else:
            key, value = unquote_plus(part), True
        if key == "":
            continue
        if key in out:
            prev = out[key]
            if isinstance(prev, list):
                prev.append(value)
            else:
                out[key] = [prev, value]
        else:
            out[key] = value
    return out


def encode_args(args: dict[str, Any]) -> str:
    """``ngx.encode_args`` as Kong uses it (keys sorted, as ``make_ordered_args`` does)."""
    from urllib.parse import quote

    parts = []
    for k in sorted(args, key=str):
        v = args[k]
        values = v if isinstance(v, list) else [v]
        for item in values:
            if item is True:
                parts.append(quote(str(k), safe=""))
            elif item is False or item is None:
                continue
            else:
                if isinstance(item, float) and item == int(item):
                    item = int(item)
                item = item.decode("utf-8", "surrogateescape") if isinstance(item, bytes) else str(item)
                parts.append(f"{quote(str(k), safe='')}={quote(item, safe='')}")
    return "&".join(parts)


@dataclass
class Upstream:
    scheme: str = "http"
    host: str = ""
    port: int = 80
    uri: str = "/"  # $upstream_uri (path only; the query string comes from $args)
    upstream_host: str | None = None  # $upstream_host: the Host header when set
    target: tuple[str, int] | None = None  # kong.service.set_target
    upstream_name: str | None = None  # kong.service.set_upstream
    connect_timeout: int = 60000
    read_timeout: int = 60000
    write_timeout: int = 60000
    retries: int = 5
    x_forwarded_prefix: str | None = None


@dataclass
class Response:
    status: int | None = None
    headers: Headers = field(default_factory=Headers)
    body: bytes | None = None
    #: modifications plugins made with kong.response.* in rewrite/access, applied on top of the upstream's
    access_ops: list[tuple[str, str, Any]] = field(default_factory=list)


@dataclass
class RequestState:
    """One request as Kong sees it."""

    method: str
    request_uri: str  # raw, as received (path and query)
    headers: Headers
    body: bytes
    client_ip: str = "127.0.0.1"
    client_port: int = 0
    server_port: int = 8000
    server_addr: str = "127.0.0.1"
    scheme: str = "http"
    http_version: float = 1.1
    worker_id: int = 0
    request_id: str = field(default_factory=new_request_id)  # $request_id
    kong_request_id: str = field(default_factory=new_request_id)  # X-Kong-Request-Id, serialize's request.id
    start_time: float = field(default_factory=lambda: round(time.time(), 3))  # ngx.req.start_time()
    body_in_file: bool = False
    request_length: int = 0
    args: str = ""  # $args (current; kong.service.request.set_query changes it)

    route: Route | None = None
    service: Service | None = None
    match: Match | None = None
    upstream: Upstream = field(default_factory=Upstream)
    consumer: Consumer | None = None
    credential: KeyAuthCredential | dict | None = None

    #: ngx.ctx as Kong keeps it (kong.nginx.get_ctx / set_ctx read and write this table)
    ngx_ctx: dict[str, Any] = field(default_factory=dict)
    #: kong.ctx.shared
    ctx_shared: dict[str, Any] = field(default_factory=dict)
    serialize_values: list[dict[str, Any]] = field(default_factory=list)

    response: Response = field(default_factory=Response)
    #: the service's answer in buffered proxying
    buffered_status: int | None = None
    buffered_headers: Headers | None = None
    buffered_body: bytes | None = None

    # timings (ms, Kong's ctx.KONG_*)
    processing_start_ms: int = 0
    proxy_latency: int | None = None
    waiting_time: int | None = None
    response_latency: int | None = None
    upstream_status: str = ""
    tries: list[dict[str, Any]] = field(default_factory=list)
    bytes_sent: int = 0
    ended_at: float | None = None
    keepalive: bool = True

    # plugins collected for this request, per downstream phase (plugin handler, PluginConfig)
    collected: dict[str, list] | None = None
    ngx_arg: list[Any] = field(default_factory=list)   # a body_filter's chunk and eof
    delayed_response: dict[str, Any] | None = None
    exited: bool = False  # ctx.KONG_EXITED
    proxied: bool = False  # ctx.KONG_PROXIED
    unexpected: bool = False  # ctx.KONG_UNEXPECTED
    phase: str = "rewrite"
    current_plugin: PluginConfig | None = None
    stats: Any = None

    def __post_init__(self) -> None:
        path, _, query = self.request_uri.partition("?")
        if not self.args:
            self.args = query
        self.processing_start_ms = int(round(self.start_time * 1000))

    # ------------------------------------------------------------------ nginx variables

    @property
    def raw_path(self) -> str:
        uri = self.request_uri
        i = uri.find("?", 1)
        return uri[:i] if i >= 0 else uri

    @property
    def is_args(self) -> str:
        return "?" if self.args else ""

    @property
    def host(self) -> str:
        """``$host``: the Host header without its port, lower-cased (or the server address)."""
        h = self.headers.get("host")
        if not h:
            return self.server_addr
        h = h.lower()
        if h.startswith("["):
            return h.split("]")[0] + "]"
        return h.rsplit(":", 1)[0] if h.count(":") == 1 else h

    @property
    def http_version_str(self) -> str:
        v = self.http_version
        return "HTTP/%s" % (("%.1f" % v) if v < 2 else str(int(v)))

    def var(self, name: str) -> Any:
        """``ngx.var[name]`` (``None`` for an unknown or unset variable)."""
        n = name
        if n.startswith("http_"):
            return self.headers.get(n[5:])
        if n.startswith("arg_"):
            from .request import decode_args as _d

            v = _d(self.args).get(n[4:])
            if isinstance(v, list):
                v = v[0]
            return None if v is True else v
        if n.startswith("cookie_"):
            cookies = self.headers.get("cookie") or ""
            for part in cookies.split(";"):
                k, _, v = part.strip().partition("=")
                if k == n[7:]:
                    return v
            return None
        u = self.upstream
        table = {
            "request_id": self.request_id,
            "kong_request_id": self.kong_request_id,
            "remote_addr": self.client_ip,
            "realip_remote_addr": self.client_ip,
            "remote_port": str(self.client_port),
            "realip_remote_port": str(self.client_port),
            "binary_remote_addr": None,
            "server_addr": self.server_addr,
            "server_port": str(self.server_port),
            "server_protocol": self.http_version_str,
            "scheme": self.scheme,
            "https": "" if self.scheme == "http" else "on",
            "host": self.host,
            "hostname": os.uname().nodename,
            "request_method": self.method,
            "request_uri": self.request_uri,
            "uri": _decoded_path(self.raw_path),
            "document_uri": _decoded_path(self.raw_path),
            "args": self.args or None,
            "query_string": self.args or None,
            "is_args": self.is_args,
            "request": f"{self.method} {self.request_uri} {self.http_version_str}",
            "request_length": str(self.request_length),
            "content_type": self.headers.get("content-type"),
            "content_length": self.headers.get("content-length"),
            "request_time": "%.3f" % ((self.ended_at or time.time()) - self.start_time),
            "upstream_uri": u.uri,
            "upstream_scheme": u.scheme,
            "upstream_host": u.upstream_host or "",
            "upstream_status": self.upstream_status or None,
            "upstream_x_forwarded_for": None,
            "upstream_x_forwarded_prefix": u.x_forwarded_prefix,
            "kong_proxy_mode": "http",
            "ctx_ref": None,
            "status": str(self.response.status) if self.response.status else None,
            "bytes_sent": str(self.bytes_sent),
        }
        return table.get(n)

    def lua_query(self) -> dict[str, Any]:
        return decode_args(self.args)


def _decoded_path(raw: str) -> str:
    from urllib.parse import unquote

    return unquote(raw)
