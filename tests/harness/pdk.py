"""The PDK calls Kong runs for an external plugin (``exposed_api`` of
``kong/runloop/plugin_servers/plugin.lua`` and the ``kong.*`` global behind it).

Every function takes a :class:`PdkCall` and the Lua arguments and returns the Lua value
the PDK call returns (its FIRST return value: Kong's ``call_pdk_method`` keeps only
that). Phase checks and argument checks raise :class:`KongLuaError` as the PDK does.
In the ``log`` timer every call that reads ``ngx.var`` / ``ngx.req`` / ``ngx.resp``
raises ``API disabled in the current context``; the overrides answer from the data
Kong saved before the timer.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

from .errors import ExitSignal, KongLuaError
from .headers import normalize_multi_header
from .luavalue import (
    MP_EMPTY_ARRAY, MP_EMPTY_MAP, NULL, Bin, JsonArray, cjson_encode, is_lua_string, lua_bytes, lua_str, lua_type,
)
from .request import RequestState, decode_args, encode_args

KONG_VERSION = "3.9.3"

REQUEST = frozenset({"rewrite", "access", "response", "log"})
BEFORE_CONTENT = frozenset({"rewrite", "access", "response"})
ACCESS_REWRITE = frozenset({"rewrite", "access"})
HEADER_BODY_LOG = frozenset({"response", "header_filter", "body_filter", "log"})
REWRITE_ACCESS_HEADER = frozenset({"rewrite", "access", "response", "header_filter"})
ACCESS_AND_AFTER = frozenset({"access", "response", "log"})
WITH_CTX = frozenset({"rewrite", "access", "header_filter", "response", "body_filter", "log"})
LOG_ONLY = frozenset({"log"})
ANY = frozenset({"certificate", "rewrite", "access", "response", "log", "preread"})

TIMER_ERROR = "API disabled in the current context"


@dataclass
class Saved:
    """What Kong keeps for the ``log`` timer (``build_phases`` in plugin.lua)."""

    plugin_name: str
    serialize_data: dict[str, Any]
    ngx_ctx: dict[str, Any]
    ctx_shared: dict[str, Any]
    request_headers: dict[str, Any]
    response_headers: dict[str, Any]
    response_status: int | None
    req_start_time: float


@dataclass
class PdkCall:
    """The context one PDK call runs in."""

    req: RequestState
    phase: str
    plugin_name: str
    kong: Any  # the KongDouble (config, node id, logs)
    saved: Saved | None = None  # set in the log timer
    via_override: bool = True
    log_records: list = field(default_factory=list)

    @property
    def in_timer(self) -> bool:
        return self.saved is not None

    @property
    def ctx(self) -> dict[str, Any]:
        return self.saved.ngx_ctx if self.saved else self.req.ngx_ctx

    def check_phase(self, allowed: frozenset) -> None:
        if self.phase not in allowed:
            raise KongLuaError(f"function cannot be called in {self.phase} phase")

    def nginx(self) -> RequestState:
        """Access to ``ngx.var`` / ``ngx.req`` / ``ngx.resp``: refused in a timer."""
        if self.in_timer:
            raise KongLuaError(TIMER_ERROR)
        return self.req


PdkFn = Callable[..., Any]
PDK: dict[str, PdkFn] = {}
#: names in exposed_api itself (looked up first, by exact name)
OVERRIDES: dict[str, PdkFn] = {}
#: tables of the kong global: "calling" one is a Lua error
NAMESPACES = {
    "kong", "kong.request", "kong.response", "kong.client", "kong.client.tls", "kong.service",
    "kong.service.request", "kong.service.response", "kong.ctx", "kong.ctx.shared", "kong.ctx.plugin",
    "kong.nginx", "kong.router", "kong.plugin", "kong.node", "kong.ip", "kong.table", "kong.cluster",
    "kong.vault", "kong.tracing", "kong.telemetry", "kong.configuration", "kong.db", "kong.cache",
    "kong.worker_events", "kong.dns", "kong.core_cache",
}
#: the typed Step method Kong answers with (get_step_method in mp_rpc.lua)
STEP_METHODS = {
    "kong.client.get_credential": "plugin.StepCredential",
    "kong.client.load_consumer": "plugin.StepConsumer",
    "kong.client.get_consumer": "plugin.StepConsumer",
    "kong.client.authenticate": "plugin.StepCredential",
    "kong.node.get_memory_stats": "plugin.StepMemoryStats",
    "kong.router.get_route": "plugin.StepRoute",
    "kong.router.get_service": "plugin.StepService",
    "kong.request.get_query": "plugin.StepMultiMap",
    "kong.request.get_headers": "plugin.StepMultiMap",
    "kong.response.get_headers": "plugin.StepMultiMap",
    "kong.service.response.get_headers": "plugin.StepMultiMap",
}


def fix_mmap(t: Any) -> Any:
    if not isinstance(t, dict):
        raise KongLuaError("bad argument #1 to 'pairs' (table expected, got " + lua_type(t) + ")")
    if not t:
        return MP_EMPTY_MAP
    out = {}
    for k, v in t.items():
        if v is True:
            out[k] = MP_EMPTY_ARRAY
        elif is_lua_string(v):
            out[k] = [v]
        else:
            out[k] = v
    return out


def fix_raw(b: Any) -> Bin:
    return Bin(b)


MUST_FIX: dict[str, Callable[[Any], Any]] = {
    "kong.request.get_query": fix_mmap,
    "kong.request.get_headers": fix_mmap,
    "kong.response.get_headers": fix_mmap,
    "kong.service.response.get_headers": fix_mmap,
    "kong.request.get_raw_body": fix_raw,
    "kong.response.get_raw_body": fix_raw,
    "kong.service.response.get_raw_body": fix_raw,
}


def pdk(name: str, *, override: bool = False) -> Callable[[PdkFn], PdkFn]:
    def deco(fn: PdkFn) -> PdkFn:
        PDK[name] = fn
        if override:
            OVERRIDES[name] = fn
        return fn

    return deco


def resolve(method: Any) -> tuple[str, PdkFn | None, bool]:
    """(canonical name, function or None, found via an override). ``"table"`` functions
    are returned as a callable raising the Lua error for calling a table."""
    if not isinstance(method, (str, bytes)):
        raise KongLuaError("bad argument #1 to 'gmatch' (string expected, got " + lua_type(method) + ")")
    name = lua_str(method)
    if name in OVERRIDES:
        return name, OVERRIDES[name], True
    segments = re.findall(r"\w+", name)
    canonical = ".".join(segments)
    if canonical == "kong.log":
        return canonical, PDK["kong.log"], False
    if canonical in PDK and canonical not in OVERRIDES:
        return canonical, PDK[canonical], False
    if canonical in OVERRIDES:  # the real PDK function behind an override
        return canonical, OVERRIDES[canonical], False
    if canonical in NAMESPACES:
        def call_table(pc: PdkCall, *args: Any) -> Any:
            raise KongLuaError("attempt to call a table value")

        return canonical, call_table, False
    return canonical, None, False


# ============================================================================ helpers


def _need_string(v: Any, what: str) -> str:
    if not is_lua_string(v):
        raise KongLuaError(f"{what} must be a string")
    return lua_str(v)


def _validate_header(name: Any, value: Any) -> None:
    if not is_lua_string(name):
        raise KongLuaError(f'invalid header name "{name}": got {lua_type(name)}, expected string')
    ok = isinstance(value, (str, bytes, int, float, bool)) or (
        isinstance(value, list) and value and all(isinstance(v, (str, bytes, int, float, bool)) for v in value))
    if not ok:
        raise KongLuaError(f'invalid header value for "{lua_str(name)}": got {lua_type(value)}, '
                           "expected array of string, string, number or boolean")


def _validate_headers(headers: Any) -> None:
    if not isinstance(headers, dict):
        raise KongLuaError("headers must be a table")
    for k, v in headers.items():
        _validate_header(k, v)


def _trusted(pc: PdkCall) -> bool:
    return pc.kong.is_trusted(pc.req.client_ip)


def _json_to_lua(v: Any) -> Any:
    if v is None:
        return NULL
    if isinstance(v, dict):
        return {k: _json_to_lua(x) for k, x in v.items()}
    if isinstance(v, list):
        return JsonArray(_json_to_lua(x) for x in v)
    return v


def _decode_body(body: bytes, content_type: str | None, max_args: Any = None) -> Any:
    if not content_type:
        return None
    ct = content_type.lower().split(";", 1)[0].strip()
    if ct.startswith("application/x-www-form-urlencoded"):
        return decode_args(lua_str(body))
    if ct.startswith("application/json"):
        try:
            value = json.loads(body or b"")
        except ValueError:
            return None
        return _json_to_lua(value) if isinstance(value, (dict, list)) else None
    return None


def _status(v: Any, lo: int, hi: int) -> int:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise KongLuaError("code must be a number")
    if v < lo or v > hi:
        raise KongLuaError(f"code must be a number between {lo} and {hi}")
    return int(v)


# ============================================================================ kong.request


@pdk("kong.request.get_scheme")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    return pc.nginx().scheme


@pdk("kong.request.get_host")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    return pc.nginx().host


@pdk("kong.request.get_port")
def _(pc: PdkCall) -> Any:
    return pc.nginx().server_port


@pdk("kong.request.get_forwarded_scheme")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    req = pc.nginx()
    if _trusted(pc):
        v = req.headers.get("x-forwarded-proto")
        if v:
            return v.lower()
    return req.scheme


@pdk("kong.request.get_forwarded_host")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    req = pc.nginx()
    if _trusted(pc):
        v = req.headers.get("x-forwarded-host")
        if v:
            v = v.split(",")[0].strip()
            return v.rsplit(":", 1)[0].lower() if v.count(":") == 1 else v.lower()
    return req.host


@pdk("kong.request.get_forwarded_port")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    req = pc.nginx()
    if _trusted(pc):
        v = req.headers.get("x-forwarded-port")
        if v and v.split(",")[0].strip().isdigit():
            return int(v.split(",")[0].strip())
    return req.server_port


@pdk("kong.request.get_forwarded_path")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    req = pc.nginx()
    if _trusted(pc):
        v = req.headers.get("x-forwarded-path")
        if v:
            return v
    return req.raw_path


@pdk("kong.request.get_forwarded_prefix")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    req = pc.nginx()
    if _trusted(pc):
        v = req.headers.get("x-forwarded-prefix")
        if v:
            return v
    return req.upstream.x_forwarded_prefix


@pdk("kong.request.get_http_version")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    return pc.nginx().http_version


@pdk("kong.request.get_method")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    return pc.nginx().method


@pdk("kong.request.get_path")
def _(pc: PdkCall) -> Any:
    from .router import normalize_path

    pc.check_phase(REQUEST)
    return normalize_path(pc.nginx().raw_path)


@pdk("kong.request.get_raw_path")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    return pc.nginx().raw_path


@pdk("kong.request.get_path_with_query")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    return pc.nginx().request_uri


@pdk("kong.request.get_raw_query")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    return pc.nginx().args or ""


@pdk("kong.request.get_query_arg")
def _(pc: PdkCall, name: Any = None, *_: Any) -> Any:
    pc.check_phase(REQUEST)
    if not is_lua_string(name):
        raise KongLuaError("query argument name must be a string")
    v = pc.nginx().lua_query().get(lua_str(name))
    return v[0] if isinstance(v, list) else v


def _check_max(v: Any, what: str, lo: int, hi: int) -> None:
    if v is None:
        return
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise KongLuaError(f"{what} must be a number")
    if v < lo:
        raise KongLuaError(f"{what} must be >= {lo}")
    if v > hi:
        raise KongLuaError(f"{what} must be <= {hi}")


@pdk("kong.request.get_query")
def _(pc: PdkCall, max_args: Any = None, *_: Any) -> Any:
    pc.check_phase(REQUEST)
    _check_max(max_args, "max_args", 1, 1000)
    return pc.nginx().lua_query()


@pdk("kong.request.get_header", override=True)
def _(pc: PdkCall, name: Any = None, *_: Any) -> Any:
    if pc.saved is not None and pc.via_override:
        value = pc.saved.request_headers.get(lua_str(name).lower().replace("_", "-")) \
            if is_lua_string(name) else None
        return value[0] if isinstance(value, list) else value
    pc.check_phase(REQUEST)
    if not is_lua_string(name):
        raise KongLuaError("header name must be a string")
    return pc.nginx().headers.get(lua_str(name))


@pdk("kong.request.get_headers", override=True)
def _(pc: PdkCall, max_headers: Any = None, *_: Any) -> Any:
    if pc.saved is not None and pc.via_override:
        return pc.saved.request_headers
    pc.check_phase(REQUEST)
    _check_max(max_headers, "max_headers", 1, 1000)
    return pc.nginx().headers.lua_table()


@pdk("kong.request.get_raw_body")
def _(pc: PdkCall, max_allowed_file_size: Any = None, *_: Any) -> Any:
    pc.check_phase(BEFORE_CONTENT)
    req = pc.nginx()
    if not req.body_in_file:
        return req.body
    # the body spilled to a file (larger than client_body_buffer_size)
    if max_allowed_file_size is None or (isinstance(max_allowed_file_size, (int, float)) and
                                         max_allowed_file_size < 0):
        return None  # nil, "request body did not fit into client body buffer, ..."
    if max_allowed_file_size > 0 and len(req.body) > max_allowed_file_size:
        return None
    return req.body


@pdk("kong.request.get_body")
def _(pc: PdkCall, mimetype: Any = None, max_args: Any = None, max_allowed_file_size: Any = None, *_: Any) -> Any:
    pc.check_phase(BEFORE_CONTENT)
    req = pc.nginx()
    ct = lua_str(mimetype) if is_lua_string(mimetype) else req.headers.get("content-type")
    if ct and ct.lower().startswith("application/json") and req.body_in_file:
        if max_allowed_file_size is None or max_allowed_file_size < 0 or \
                (max_allowed_file_size > 0 and len(req.body) > max_allowed_file_size):
            return None
    return _decode_body(req.body, ct, max_args)


@pdk("kong.request.get_start_time")
def _(pc: PdkCall) -> Any:
    pc.check_phase(REQUEST)
    return pc.req.processing_start_ms


@pdk("kong.request.get_uri_captures", override=True)
def _(pc: PdkCall, *_: Any) -> Any:
    pc.check_phase(REQUEST)
    match = pc.req.match
    caps = match.uri_captures if match else {"unnamed": {}, "named": {}}
    return {"unnamed": JsonArray() if not caps["unnamed"] else dict(caps["unnamed"]),
            "named": dict(caps["named"])}


# ============================================================================ kong.client


@pdk("kong.client.get_ip")
def _(pc: PdkCall) -> Any:
    return pc.nginx().client_ip


@pdk("kong.client.get_forwarded_ip")
def _(pc: PdkCall) -> Any:
    return pc.nginx().client_ip


@pdk("kong.client.get_port")
def _(pc: PdkCall) -> Any:
    return pc.nginx().client_port


@pdk("kong.client.get_forwarded_port")
def _(pc: PdkCall) -> Any:
    return pc.nginx().client_port


@pdk("kong.client.get_credential")
def _(pc: PdkCall) -> Any:
    pc.check_phase(ACCESS_AND_AFTER | {"rewrite"})
    return pc.ctx.get("authenticated_credential")


@pdk("kong.client.get_consumer")
def _(pc: PdkCall) -> Any:
    pc.check_phase(ACCESS_AND_AFTER | {"rewrite"})
    return pc.ctx.get("authenticated_consumer")


@pdk("kong.client.authenticate")
def _(pc: PdkCall, consumer: Any = None, credential: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    if consumer is not None and not isinstance(consumer, dict):
        raise KongLuaError("consumer must be a table or nil")
    if credential is not None and not isinstance(credential, dict):
        raise KongLuaError("credential must be a table or nil")
    if consumer is None and credential is None:
        raise KongLuaError("either credential or consumer must be provided")
    pc.req.ngx_ctx["authenticated_consumer"] = consumer
    pc.req.ngx_ctx["authenticated_credential"] = credential
    return None


@pdk("kong.client.load_consumer")
def _(pc: PdkCall, consumer_id: Any = None, search_by_username: Any = None, *_: Any) -> Any:
    if not is_lua_string(consumer_id):
        raise KongLuaError("consumer_id must be a string")
    cid = lua_str(consumer_id)
    decl = pc.kong.declarative
    consumer = decl.consumer_by_id(cid)
    if consumer is None and search_by_username:
        consumer = decl.consumer_by_username(cid)
    return consumer.entity() if consumer else None


@pdk("kong.client.get_protocol")
def _(pc: PdkCall, allow_terminated: Any = None, *_: Any) -> Any:
    req = pc.nginx()
    if pc.ctx.get("route") is None:
        return None  # nil, "No active route found"
    return req.scheme


# ============================================================================ kong.service


@pdk("kong.service.set_upstream")
def _(pc: PdkCall, host: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    h = _need_string(host, "host")
    if pc.kong.declarative.upstream_by_name(h) is None:
        return None  # nil, "could not find an Upstream named '...'"
    pc.req.upstream.upstream_name = h
    pc.req.upstream.target = None
    return True


@pdk("kong.service.set_target")
def _(pc: PdkCall, host: Any = None, port: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    h = _need_string(host, "host")
    if not isinstance(port, (int, float)) or isinstance(port, bool) or port != int(port):
        raise KongLuaError("port must be an integer")
    if port < 0 or port > 65535:
        raise KongLuaError("port must be an integer between 0 and 65535: given " + str(port))
    pc.req.upstream.target = (h, int(port))
    pc.req.upstream.upstream_name = None
    return None


@pdk("kong.service.set_retries")
def _(pc: PdkCall, retries: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    if not isinstance(retries, (int, float)) or retries < 0 or retries > 32767:
        raise KongLuaError("retries must be an integer between 0 and 32767")
    pc.req.upstream.retries = int(retries)
    return None


@pdk("kong.service.set_timeouts")
def _(pc: PdkCall, connect: Any = None, write: Any = None, read: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    for name, v in (("connect_timeout", connect), ("write_timeout", write), ("read_timeout", read)):
        if not isinstance(v, (int, float)) or v < 1 or v > 2147483646:
            raise KongLuaError(f"{name} must be an integer between 1 and 2147483646")
    u = pc.req.upstream
    u.connect_timeout, u.write_timeout, u.read_timeout = int(connect), int(write), int(read)
    return None


for _name in ("kong.service.set_tls_verify", "kong.service.set_tls_verify_depth", "kong.service.set_tls_verify_store",
              "kong.service.set_tls_cert_key", "kong.service.set_tls_verify_store"):
    def _tls(pc: PdkCall, *args: Any) -> Any:
        pc.check_phase(ACCESS_REWRITE)
        return True

    PDK[_name] = _tls


# ============================================================================ kong.service.request


@pdk("kong.service.request.enable_buffering")
def _(pc: PdkCall) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    pc.req.ngx_ctx["buffered_proxying"] = True
    return None


@pdk("kong.service.request.set_scheme")
def _(pc: PdkCall, scheme: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    s = _need_string(scheme, "scheme")
    if s not in ("http", "https"):
        raise KongLuaError("invalid scheme: " + s)
    pc.req.upstream.scheme = s
    return None


@pdk("kong.service.request.set_path")
def _(pc: PdkCall, path: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    p = _need_string(path, "path")
    if not p.startswith("/"):
        raise KongLuaError("path must start with /")
    pc.req.upstream.uri = quote(p, safe="/:@!$&'()*+,;=-._~%")
    return None


@pdk("kong.service.request.set_raw_query")
def _(pc: PdkCall, query: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    pc.req.args = _need_string(query, "query")
    return None


_METHODS = {"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE", "PROPFIND", "PROPPATCH",
            "LOCK", "UNLOCK", "PATCH", "TRACE"}


@pdk("kong.service.request.set_method")
def _(pc: PdkCall, method: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    m = _need_string(method, "method")
    if m not in _METHODS:
        raise KongLuaError("invalid method: " + m)
    pc.req.method = m
    return None


@pdk("kong.service.request.set_query")
def _(pc: PdkCall, args: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    if not isinstance(args, (dict, list)):
        raise KongLuaError("args must be a table")
    pc.req.args = encode_args(args if isinstance(args, dict) else {})
    return None


@pdk("kong.service.request.clear_query_arg")
def _(pc: PdkCall, name: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    n = _need_string(name, "query argument name")
    parts = [p for p in pc.req.args.split("&") if p and p.split("=", 1)[0] != n]
    pc.req.args = "&".join(parts)
    return None


def _set_req_header(pc: PdkCall, name: str, value: Any) -> None:
    if name.lower() == "host":
        pc.req.upstream.upstream_host = lua_str(value) if not isinstance(value, list) else lua_str(value[0])
    pc.req.headers.set(name, normalize_multi_header(value))


@pdk("kong.service.request.set_header")
def _(pc: PdkCall, header: Any = None, value: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    _validate_header(header, value)
    name = lua_str(header)
    if name.lower() == ":authority":
        return None  # nil, "cannot set :authority pseudo-header on non-grpc requests"
    _set_req_header(pc, name, value)
    return None


@pdk("kong.service.request.add_header")
def _(pc: PdkCall, header: Any = None, value: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    _validate_header(header, value)
    name = lua_str(header)
    if name.lower() == "host":
        pc.req.upstream.upstream_host = lua_str(value) if not isinstance(value, list) else lua_str(value[0])
    v = normalize_multi_header(value)
    for item in (v if isinstance(v, list) else [v]):
        pc.req.headers.add(name, item)
    return None


@pdk("kong.service.request.clear_header")
def _(pc: PdkCall, header: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    pc.req.headers.clear(_need_string(header, "header"))
    return None


@pdk("kong.service.request.set_headers")
def _(pc: PdkCall, headers: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    if isinstance(headers, list) and not headers:
        headers = {}
    _validate_headers(headers)
    for k, v in headers.items():
        _set_req_header(pc, lua_str(k), v)
    return None


def _set_body(req: RequestState, body: bytes) -> None:
    req.body = body
    req.body_in_file = False
    req.headers.set("Content-Length", str(len(body)))


@pdk("kong.service.request.set_raw_body")
def _(pc: PdkCall, body: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    if not is_lua_string(body):
        raise KongLuaError("body must be a string")
    _set_body(pc.req, lua_bytes(body))
    return None


@pdk("kong.service.request.set_body")
def _(pc: PdkCall, args: Any = None, mimetype: Any = None, *_: Any) -> Any:
    pc.check_phase(ACCESS_REWRITE)
    if not isinstance(args, (dict, list)):
        raise KongLuaError("args must be a table")
    mime = lua_str(mimetype) if is_lua_string(mimetype) else (pc.req.headers.get("content-type") or "")
    ct = mime.lower().split(";", 1)[0].strip()
    if ct == "application/json":
        body = cjson_encode(args).encode()
    elif ct == "application/x-www-form-urlencoded":
        body = encode_args(args if isinstance(args, dict) else {}).encode()
    else:
        return None  # nil, "unsupported content type"
    _set_body(pc.req, body)
    pc.req.headers.set("Content-Type", mime)
    return None


# ============================================================================ kong.service.response


def _buffered(pc: PdkCall) -> bool:
    return bool(pc.ctx.get("buffered_proxying"))


@pdk("kong.service.response.get_status")
def _(pc: PdkCall) -> Any:
    pc.check_phase(HEADER_BODY_LOG)
    if pc.req.buffered_status is not None and _buffered(pc):
        return pc.req.buffered_status
    req = pc.nginx()
    return int(req.upstream_status) if req.upstream_status.isdigit() else None


@pdk("kong.service.response.get_headers")
def _(pc: PdkCall, max_headers: Any = None, *_: Any) -> Any:
    pc.check_phase(HEADER_BODY_LOG)
    _check_max(max_headers, "max_headers", 1, 1000)
    if pc.req.buffered_headers is not None and _buffered(pc):
        return pc.req.buffered_headers.lua_table()
    req = pc.nginx()
    return req.buffered_headers.lua_table() if req.buffered_headers is not None else {}


@pdk("kong.service.response.get_header")
def _(pc: PdkCall, name: Any = None, *_: Any) -> Any:
    pc.check_phase(HEADER_BODY_LOG)
    if not is_lua_string(name):
        raise KongLuaError("name must be a string")
    if pc.req.buffered_headers is not None:
        if not _buffered(pc):
            pc.nginx()
        return pc.req.buffered_headers.get(lua_str(name))
    pc.nginx()
    return None


@pdk("kong.service.response.get_raw_body")
def _(pc: PdkCall) -> Any:
    pc.check_phase(HEADER_BODY_LOG)
    if not _buffered(pc):
        raise KongLuaError("service body is only available with buffered proxying "
                           "(see: kong.service.request.enable_buffering function)")
    return pc.req.buffered_body or b""


@pdk("kong.service.response.get_body")
def _(pc: PdkCall, mimetype: Any = None, max_args: Any = None, *_: Any) -> Any:
    pc.check_phase(HEADER_BODY_LOG)
    if not _buffered(pc):
        raise KongLuaError("service body is only available with buffered proxying "
                           "(see: kong.service.request.enable_buffering function)")
    headers = pc.req.buffered_headers
    ct = lua_str(mimetype) if is_lua_string(mimetype) else (headers.get("content-type") if headers else None)
    return _decode_body(pc.req.buffered_body or b"", ct, max_args)


# ============================================================================ kong.response


@pdk("kong.response.get_status", override=True)
def _(pc: PdkCall) -> Any:
    if pc.saved is not None and pc.via_override:
        return pc.saved.response_status
    pc.check_phase(HEADER_BODY_LOG)
    return pc.nginx().response.status


@pdk("kong.response.get_headers", override=True)
def _(pc: PdkCall, max_headers: Any = None, *_: Any) -> Any:
    if pc.saved is not None and pc.via_override:
        return pc.saved.response_headers
    pc.check_phase(HEADER_BODY_LOG)
    _check_max(max_headers, "max_headers", 1, 1000)
    return pc.nginx().response.headers.lua_table()


@pdk("kong.response.get_header", override=True)
def _(pc: PdkCall, name: Any = None, *_: Any) -> Any:
    if pc.saved is not None and pc.via_override:
        v = pc.saved.response_headers.get(lua_str(name).lower().replace("_", "-")) if is_lua_string(name) else None
        return v[0] if isinstance(v, list) else v
    pc.check_phase(HEADER_BODY_LOG)
    if not is_lua_string(name):
        raise KongLuaError("header name must be a string")
    return pc.nginx().response.headers.get(lua_str(name))


@pdk("kong.response.get_source", override=True)
def _(pc: PdkCall, *_: Any) -> Any:
    if pc.saved is None:
        pc.check_phase(HEADER_BODY_LOG)
    ctx = pc.ctx
    if ctx.get("KONG_UNEXPECTED"):
        return "error"
    if ctx.get("KONG_EXITED"):
        return "exit"
    if ctx.get("KONG_PROXIED"):
        return "service"
    return "error"


@pdk("kong.response.set_status")
def _(pc: PdkCall, status: Any = None, *_: Any) -> Any:
    pc.check_phase(REWRITE_ACCESS_HEADER)
    s = _status(status, 100, 599)
    if pc.phase == "response":
        pc.req.response.status = s
    else:
        pc.req.response.access_ops.append(("status", "", s))
    return None


def _response_op(pc: PdkCall, op: str, name: str, value: Any) -> None:
    if pc.phase in ("response", "header_filter"):   # the headers about to be sent
        h = pc.req.response.headers
        if op == "set":
            h.set(name, normalize_multi_header(value))
        elif op == "add":
            v = normalize_multi_header(value)
            for item in (v if isinstance(v, list) else [v]):
                h.add(name, item)
        else:
            h.clear(name)
    else:
        pc.req.response.access_ops.append((op, name, value))


@pdk("kong.response.set_header")
def _(pc: PdkCall, name: Any = None, value: Any = None, *_: Any) -> Any:
    pc.check_phase(REWRITE_ACCESS_HEADER)
    _validate_header(name, value)
    _response_op(pc, "set", lua_str(name), value)
    return None


@pdk("kong.response.add_header")
def _(pc: PdkCall, name: Any = None, value: Any = None, *_: Any) -> Any:
    pc.check_phase(REWRITE_ACCESS_HEADER)
    _validate_header(name, value)
    _response_op(pc, "add", lua_str(name), value)
    return None


@pdk("kong.response.clear_header")
def _(pc: PdkCall, name: Any = None, *_: Any) -> Any:
    pc.check_phase(REWRITE_ACCESS_HEADER)
    if not is_lua_string(name):
        raise KongLuaError("header name must be a string")
    _response_op(pc, "clear", lua_str(name), None)
    return None


@pdk("kong.response.set_headers")
def _(pc: PdkCall, headers: Any = None, *_: Any) -> Any:
    pc.check_phase(REWRITE_ACCESS_HEADER)
    if isinstance(headers, list) and not headers:
        headers = {}
    _validate_headers(headers)
    for k, v in headers.items():
        _response_op(pc, "set", lua_str(k), v)
    return None


@pdk("kong.response.get_raw_body")
def _(pc: PdkCall) -> Any:
    pc.check_phase(frozenset({"body_filter"}))


@pdk("kong.response.set_raw_body")
def _(pc: PdkCall, body: Any = None, *_: Any) -> Any:
    pc.check_phase(frozenset({"body_filter"}))


def _exit_common(pc: PdkCall, status: int, body: Any, headers: Any) -> None:
    if pc.req.delayed_response is not None and pc.phase == "response":
        raise KongLuaError("headers have already been sent")
    if headers is not None and not isinstance(headers, (dict, list)):
        raise KongLuaError("headers must be a nil or table")
    if isinstance(headers, list):
        headers = {}
    if headers is not None:
        _validate_headers(headers)
    pc.req.ngx_ctx["KONG_EXITED"] = True
    pc.req.exited = True
    pc.req.delayed_response = {"status": status, "body": body, "headers": headers or {}, "phase": pc.phase}
    raise ExitSignal()


@pdk("kong.response.exit")
def _(pc: PdkCall, status: Any = None, body: Any = None, headers: Any = None, *_: Any) -> Any:
    pc.check_phase(REWRITE_ACCESS_HEADER)
    s = _status(status, 100, 599)
    if body is not None and not isinstance(body, (str, bytes, dict, list)):
        raise KongLuaError("body must be a nil, string or table")
    _exit_common(pc, s, body, headers)


@pdk("kong.response.error")
def _(pc: PdkCall, status: Any = None, message: Any = None, headers: Any = None, *_: Any) -> Any:
    pc.check_phase(REWRITE_ACCESS_HEADER)
    s = _status(status, 400, 599)
    if message is not None:
        if isinstance(message, (dict, list)):
            message = cjson_encode(message)
        if not is_lua_string(message):
            raise KongLuaError("message must be a nil, a string or a table")
    if headers is not None and not isinstance(headers, (dict, list)):
        raise KongLuaError("headers must be a nil or table")
    hdrs = dict(headers) if isinstance(headers, dict) else {}
    ctype = next((v for k, v in hdrs.items() if lua_str(k).lower() == "content-type"), None)
    if isinstance(ctype, list):
        ctype = ctype[0]
    if ctype is None:
        ctype = get_response_type(pc.req.headers.get("accept"))
        hdrs["Content-Type"] = ctype
    body = error_body(lua_str(ctype), lua_str(message) if message is not None else http_error_message(s),
                      pc.req.kong_request_id)
    _exit_common(pc, s, body, hdrs)


# ---------------------------------------------------------------- error templates (kong/tools/http.lua)

MIME_JSON = "application/json; charset=utf-8"
_MIME = {
    "application/grpc": "", "text/html": "text/html; charset=utf-8", "application/json": MIME_JSON,
    "text/plain": "text/plain; charset=utf-8", "application/xml": "application/xml; charset=utf-8",
    "application": MIME_JSON, "text": "text/plain; charset=utf-8",
}
_TEMPLATES = {
    "text/html; charset=utf-8": ("<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n"
                                 "    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n"
                                 "    <p>%s.</p>\n    <p>request_id: %s</p>\n  </body>\n</html>\n"),
    MIME_JSON: "{\n  \"message\":\"%s\",\n  \"request_id\":\"%s\"\n}",
    "text/plain; charset=utf-8": "%s\nrequest_id: %s\n",
    "application/xml; charset=utf-8": ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n"
                                       "  <message>%s</message>\n  <requestid>%s</requestid>\n</error>\n"),
}
_ACCEPT_RE = re.compile(
    r"^((?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*)/(?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*))"
    r"(?:\s*;\s*q=(1(?:\.0{0,3})?|0(?:\.\d{0,3})?)|\s*;\s*[a-z0-9][a-z0-9\-!#$&^_+.]+(?:=[^;]*)?)*", re.I)


def _mime_type(media: str) -> str:
    media = media.strip().split(";")[0]
    main, _, sub = media.partition("/")
    if sub:
        if sub == "*":
            return MIME_JSON if main == "*" else _MIME.get(main, MIME_JSON)
        return _MIME.get(media, MIME_JSON)
    return MIME_JSON


def get_response_type(accept: str | None) -> str:
    """``kong.tools.http.get_response_type``: the error format a client's Accept asks for."""
    content_type = MIME_JSON
    if accept:
        best = 0.0
        for value in accept.split(","):
            m = _ACCEPT_RE.match(value.strip())
            if m:
                q = float(m.group(2)) if m.group(2) else 1.0
                if q > best:
                    best = q
                    content_type = _mime_type(m.group(1)) or content_type
    return content_type


_HTTP_MESSAGES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    408: "Request timeout", 409: "Conflict", 411: "Length required", 412: "Precondition failed",
    413: "Payload too large", 414: "URI too long", 415: "Unsupported media type", 417: "Expectation failed",
    429: "API rate limit exceeded", 500: "An unexpected error occurred", 501: "Not implemented",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable", 504: "The upstream server is timing out",
}


def http_error_message(status: int) -> str:
    return _HTTP_MESSAGES.get(status, f"The upstream server responded with {status}")


def error_body(content_type: str, message: str, request_id: str) -> str:
    template = _TEMPLATES.get(content_type)
    if template is None:
        if content_type.startswith("application/grpc"):
            return ""
        template = _TEMPLATES[MIME_JSON]
    return template % (message, request_id)


# ============================================================================ kong.ctx / kong.nginx


@pdk("kong.ctx.shared.get", override=True)
def _(pc: PdkCall, key: Any = None, *_: Any) -> Any:
    table = pc.saved.ctx_shared if pc.saved else pc.req.ctx_shared
    if key is None:
        return None
    return table.get(lua_str(key) if isinstance(key, bytes) else key)


@pdk("kong.ctx.shared.set", override=True)
def _(pc: PdkCall, key: Any = None, value: Any = None, *_: Any) -> Any:
    table = pc.saved.ctx_shared if pc.saved else pc.req.ctx_shared
    if key is None:
        raise KongLuaError("table index is nil")
    k = lua_str(key) if isinstance(key, bytes) else key
    if value is None:
        table.pop(k, None)
    else:
        table[k] = value
    return None


@pdk("kong.nginx.get_var", override=True)
def _(pc: PdkCall, name: Any = None, *_: Any) -> Any:
    req = pc.nginx()
    if not is_lua_string(name):
        raise KongLuaError("bad variable name")
    return req.var(lua_str(name))


@pdk("kong.nginx.get_tls1_version_str", override=True)
def _(pc: PdkCall, *_: Any) -> Any:
    return None


@pdk("kong.nginx.get_ctx", override=True)
def _(pc: PdkCall, key: Any = None, *_: Any) -> Any:
    if key is None:
        return None
    return pc.ctx.get(lua_str(key) if isinstance(key, bytes) else key)


@pdk("kong.nginx.set_ctx", override=True)
def _(pc: PdkCall, key: Any = None, value: Any = None, *_: Any) -> Any:
    if key is None:
        raise KongLuaError("table index is nil")
    k = lua_str(key) if isinstance(key, bytes) else key
    if value is None:
        pc.ctx.pop(k, None)
    else:
        pc.ctx[k] = value
    return None


@pdk("kong.nginx.req_start_time", override=True)
def _(pc: PdkCall, *_: Any) -> Any:
    if pc.saved:
        return pc.saved.req_start_time
    return pc.req.start_time


@pdk("kong.nginx.get_subsystem")
def _(pc: PdkCall) -> Any:
    return "http"


# ============================================================================ kong.log


def _log_text(args: tuple) -> str:
    parts = []
    for a in args:
        if a is None:
            parts.append("nil")
        elif isinstance(a, bool):
            parts.append("true" if a else "false")
        elif isinstance(a, (dict, list)):
            parts.append(f"table: 0x{id(a):012x}")
        elif isinstance(a, float) and a == int(a):
            parts.append(str(int(a)))
        else:
            parts.append(lua_str(a) if isinstance(a, (str, bytes)) else str(a))
    return "".join(parts)


def _make_log(level: str) -> PdkFn:
    def fn(pc: PdkCall, *args: Any) -> Any:
        pc.kong._record_log(level, _log_text(args), plugin=pc.plugin_name, request=pc.req, source="plugin")
        return None

    return fn


for _lvl in ("debug", "info", "notice", "warn", "err", "crit", "alert", "emerg"):
    PDK["kong.log." + _lvl] = _make_log(_lvl)
PDK["kong.log"] = _make_log("notice")
PDK["kong.log.inspect"] = lambda pc, *args: None
PDK["kong.log.deprecation"] = _make_log("warn")


@pdk("kong.log.serialize", override=True)
def _(pc: PdkCall, *_: Any) -> Any:
    if pc.saved is not None and pc.via_override:
        return cjson_encode(pc.saved.serialize_data)
    pc.check_phase(LOG_ONLY)
    return cjson_encode(pc.kong._serialize(pc.req))


@pdk("kong.log.set_serialize_value")
def _(pc: PdkCall, key: Any = None, value: Any = None, options: Any = None, *_: Any) -> Any:
    pc.check_phase(WITH_CTX)
    if not is_lua_string(key):
        raise KongLuaError("key must be a string")
    mode = "set"
    if isinstance(options, dict) and options.get("mode") is not None:
        mode = lua_str(options["mode"])
    if mode not in ("set", "add", "replace"):
        raise KongLuaError("mode must be 'set', 'add' or 'replace'")
    pc.req.serialize_values.append({"key": lua_str(key), "value": value, "mode": mode})
    return None


# ============================================================================ kong.router / plugin / node / ip / table


@pdk("kong.router.get_route")
def _(pc: PdkCall) -> Any:
    pc.check_phase(ACCESS_AND_AFTER)
    return pc.ctx.get("route")


@pdk("kong.router.get_service")
def _(pc: PdkCall) -> Any:
    pc.check_phase(ACCESS_AND_AFTER)
    return pc.ctx.get("service")


@pdk("kong.plugin.get_id")
def _(pc: PdkCall) -> Any:
    return pc.ctx.get("plugin_id")


@pdk("kong.node.get_id")
def _(pc: PdkCall) -> Any:
    return pc.kong.node_id


@pdk("kong.node.get_hostname")
def _(pc: PdkCall) -> Any:
    return socket.gethostname()


@pdk("kong.node.get_memory_stats")
def _(pc: PdkCall, unit: Any = None, scale: Any = None, *_: Any) -> Any:
    def fmt(n: int) -> Any:
        if unit in (None, "b"):
            return n
        div = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}.get(lua_str(unit).lower() if unit else "b", 1)
        digits = int(scale) if isinstance(scale, (int, float)) else 2
        return f"{n / div:.{digits}f} {lua_str(unit).upper()}iB"

    return {
        "lua_shared_dicts": {
            "kong": {"allocated_slabs": fmt(40960), "capacity": fmt(5242880)},
            "kong_db_cache": {"allocated_slabs": fmt(794624), "capacity": fmt(134217728)},
        },
        "workers_lua_vms": [{"http_allocated_gc": fmt(50000000), "pid": 10000 + w}
                            for w in range(pc.kong.workers)],
    }


@pdk("kong.ip.is_trusted")
def _(pc: PdkCall, address: Any = None, *_: Any) -> Any:
    if not is_lua_string(address):
        raise KongLuaError("address must be a string")
    return pc.kong.is_trusted(lua_str(address))


@pdk("kong.table.new")
def _(pc: PdkCall, *args: Any) -> Any:
    return {}


@pdk("kong.table.clear")
def _(pc: PdkCall, *args: Any) -> Any:
    return None


def now_ms() -> int:
    return int(time.time() * 1000)
