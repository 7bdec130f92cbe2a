"""Reading the captured Kong 3.9.3 conversation (``tests/harness/traces``, a copy of the project's
``shared/kong-traces``, kept with the tests so that they run in any checkout) and comparing a
recorded conversation with it.

Normalisation (applied to both sides) keeps everything that is Kong's behaviour and
blanks what differs from run to run:

* server-assigned ids: each ``InstanceId`` becomes ``<instance:K>`` where K counts the
  ``StartInstance`` call that produced it, each ``EventId`` ``<event:K>`` where K counts
  the ``HandleEvent`` that opened it (ids a server reuses after a restart stay distinct);
* connections become ``<conn:K>`` in order of first use; msg ids are compared as they are;
* 32-hex request ids -> ``<rid>``; ``__seq__`` values -> ``<seq:K>``;
* times: ``created_at``, ``updated_at``, ``started_at``, ``balancer_start(_ns)``,
  latencies, sizes -> ``<n>``; the ``date`` header -> ``<date>``;
* addresses: ``127.0.0.1:<port>`` inside strings and every ``port`` field -> ``<port>``;
* JSON strings (the ``Config`` of ``StartInstance``, ``kong.log.serialize``) are parsed
  (key order is Lua's hash order) and normalised the same way.

Everything else must be identical: methods, typed Step methods, argument shapes,
``Data`` present or absent, ``[]`` vs ``{}``, bytes vs str, header sets and values.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable

TRACE_FILE = os.path.join(os.path.dirname(__file__), "traces", "kong-3.9.3-msgpack-rpc.jsonl")

_RID = re.compile(r"^[0-9a-f]{32}$")
_HOSTPORT = re.compile(r"127\.0\.0\.1:\d+")
_TIME_KEYS = {"created_at", "updated_at", "started_at", "balancer_start", "balancer_start_ns", "balancer_latency",
              "balancer_latency_ns", "StartTime"}
_BLANK_HEADER_VALUES = {"date": "<date>", "x-kong-upstream-latency": "<n>", "x-kong-proxy-latency": "<n>",
                        "x-kong-response-latency": "<n>"}


def load_trace(path: str | None = None) -> list[dict[str, Any]]:
    """Lines of the trace file; bytes are decoded back (``__bytes_utf8__`` / ``__bytes_b64__``)."""
    path = path or TRACE_FILE
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(_decode_bytes(json.loads(line)))
    return out


def _decode_bytes(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"__bytes_utf8__"}:
            return v["__bytes_utf8__"].encode()
        if set(v) == {"__bytes_b64__"}:
            import base64

            return base64.b64decode(v["__bytes_b64__"])
        return {k: _decode_bytes(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode_bytes(x) for x in v]
    return v


class Normalizer:
    def __init__(self) -> None:
        self.instances: dict[Any, str] = {}
        self.events: dict[Any, str] = {}
        self.conns: dict[Any, str] = {}
        self.seqs: dict[Any, str] = {}
        self.start_calls = 0
        self.handle_calls = 0
        self.pending: dict[tuple, str] = {}  # (conn, msgid) -> method

    def run(self, lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Normalise a whole conversation (both directions needed for the id maps);
        returns the normalised kong->server messages as ``{"conn", "msg"}``."""
        out = []
        for line in lines:
            if "marker" in line:
                continue
            msg = line["msg"]
            conn = self.conns.setdefault(line.get("conn"), f"<conn:{len(self.conns) + 1}>")
            if line["dir"] == "kong->server":
                if msg[0] == 0:
                    self.pending[(line.get("conn"), msg[1])] = msg[2]
                out.append({"conn": conn, "msg": self.value(msg, None)})
            else:
                if msg[0] == 1:
                    method = self.pending.pop((line.get("conn"), msg[1]), None)
                    result = msg[3] if len(msg) > 3 else None
                    if method == "plugin.StartInstance" and isinstance(result, dict):
                        self.start_calls += 1
                        self.instances[result.get("Id")] = f"<instance:{self.start_calls}>"
                    elif method == "plugin.HandleEvent" and isinstance(result, dict):
                        self.handle_calls += 1
                        self.events[result.get("EventId")] = f"<event:{self.handle_calls}>"
                    elif method == "plugin.HandleEvent":
                        self.handle_calls += 1
        return out

    def value(self, v: Any, key: str | None) -> Any:
        if key == "InstanceId" or (key == "__close__"):
            return self.instances.get(v, f"<unknown-instance:{v}>")
        if key == "EventId":
            return self.events.get(v, f"<unknown-event:{v}>")
        if key == "__seq__":
            return self.seqs.setdefault(v, f"<seq:{len(self.seqs) + 1}>")
        if key in _TIME_KEYS or key == "port":
            return "<n>" if key != "port" else "<port>"
        if isinstance(v, dict):
            return {k: self._dict_item(k, x) for k, x in v.items()}
        if isinstance(v, list):
            if len(v) == 4 and v[0] == 0 and v[2] == "plugin.CloseInstance":
                return [0, v[1], v[2], [self.value(v[3][0], "InstanceId")]]
            return [self.value(x, None) for x in v]
        if isinstance(v, str):
            if key in ("Config", "Data") and v.startswith("{"):
                try:
                    return {"__json__": self.value(json.loads(v), None)}
                except ValueError:
                    pass
            if _RID.match(v):
                return "<rid>"
            return _HOSTPORT.sub("127.0.0.1:<port>", v)
        return v

    def _dict_item(self, k: str, x: Any) -> Any:
        if k in ("latencies",) and isinstance(x, dict):
            return {kk: "<n>" for kk in x}
        if k == "size":
            return "<n>"
        if k in _BLANK_HEADER_VALUES:
            return _BLANK_HEADER_VALUES[k] if not isinstance(x, list) else [_BLANK_HEADER_VALUES[k]] * len(x)
        return self.value(x, k)


def normalize(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return Normalizer().run(lines)


def segments(lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The trace cut at its markers."""
    out: list[list[dict[str, Any]]] = [[]]
    for line in lines:
        if "marker" in line:
            out.append([])
        else:
            out[-1].append(line)
    return out


def diff(expected: list[dict[str, Any]], actual: list[dict[str, Any]], limit: int = 5) -> list[str]:
    """Human-readable differences between two normalised conversations."""
    problems = []
    for i, (e, a) in enumerate(zip(expected, actual)):
        if e != a:
            problems.append(f"message {i}:\n  kong    {json.dumps(e, sort_keys=True, default=str)[:1500]}\n"
                            f"  double  {json.dumps(a, sort_keys=True, default=str)[:1500]}")
            if len(problems) >= limit:
                break
    if len(expected) != len(actual):
        problems.append(f"{len(expected)} messages from Kong, {len(actual)} from the double")
    return problems
