"""The kong.conf settings the double honours, read the way Kong and nginx read them.

* ``nginx_http_lua_socket_connect_timeout`` / ``_send_timeout`` / ``_read_timeout``: Kong
  injects ``nginx_http_*`` keys into nginx's ``http {}`` block. Kong 3.9.3's plugin-server
  client (``rpc/mp_rpc.lua``) opens its cosockets with ``ngx.socket.connect`` and never
  calls ``settimeout``, so every connect, send and read of a plugin-server call takes
  these directives (OpenResty's default: 60 s each). The read timeout bounds each read
  (``receiveany``), not the whole call. The Service's ``connect/write/read_timeout``
  (set per request with ``ngx.balancer.set_timeouts``) bound the upstream instead: a
  long LLM stream is not cut by these.
* ``nginx_http_client_body_buffer_size``: bodies larger than this spill to a file.

Anything else in the file is Kong's business and ignored here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_SOCKET_TIMEOUT = 60.0  # OpenResty's lua_socket_*_timeout default

_TIME_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


@dataclass(frozen=True)
class SocketTimeouts:
    """Seconds each cosocket operation of a plugin-server call may take."""

    connect: float = DEFAULT_SOCKET_TIMEOUT
    send: float = DEFAULT_SOCKET_TIMEOUT
    read: float = DEFAULT_SOCKET_TIMEOUT

    @classmethod
    def uniform(cls, seconds: float) -> "SocketTimeouts":
        return cls(float(seconds), float(seconds), float(seconds))


def parse_time(value: str) -> float:
    """An nginx time (``5s``, ``500ms``, ``1m``, ``1m30s``; no unit means seconds) in seconds."""
    text = value.strip()
    if re.fullmatch(r"\d+", text):
        return float(text)
    parts = re.findall(r"(\d+)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not an nginx time: {value!r}")
    return sum(int(n) * _TIME_UNITS[u] for n, u in parts)


def parse_size(value: str) -> int:
    """An nginx size (``8k``, ``10m``) in bytes."""
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value.strip())
    if not m:
        raise ValueError(f"not an nginx size: {value!r}")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def read_kong_conf(path: str | Path) -> dict[str, str]:
    """Active ``key = value`` lines of a kong.conf (``#`` starts a comment unless escaped as ``\\#``)."""
    conf: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = re.sub(r"(?<!\\)#.*$", "", line).strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"not a key = value line: {line!r}")
        conf[key.strip()] = value.strip().replace("\\#", "#")
    return conf


def socket_timeouts(conf: Mapping[str, str], default: SocketTimeouts | None = None) -> SocketTimeouts:
    """The plugin-server call's timeouts from kong.conf settings (unset ones keep ``default``)."""
    base = default or SocketTimeouts()
    values = {}
    for op in ("connect", "send", "read"):
        raw = conf.get(f"nginx_http_lua_socket_{op}_timeout")
        values[op] = parse_time(raw) if raw is not None else getattr(base, op)
    return SocketTimeouts(**values)
