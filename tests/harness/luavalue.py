"""How values look after a trip through Kong's Lua side.

Kong decodes what a plugin server sends with lua-MessagePack into Lua values and encodes
its answers back with the same library (``string_compat`` strings, ``without_hole``
arrays, integral doubles packed as integers). Lua has one table type, so the shape of
a value can change on the way:

* an empty table, whatever it was in Python, is packed as an empty ARRAY: ``{}`` -> ``[]``;
* a table whose keys are exactly ``1..n`` is an array; any other table is a map
  (an array with a ``nil`` hole comes back as a map with integer keys);
* a ``nil`` stored in a table disappears (``{"a": None}`` -> ``[]``);
* an integral number is packed as an integer (``2.0`` -> ``2``);
* every Lua string is packed as a msgpack *str*, whether it arrived as str or bin.

Kong's explicit exceptions live in ``mp_rpc.lua``'s ``must_fix`` table: header/query
multimaps (``fix_mmap``: ``"v"`` -> ``["v"]``, ``true`` -> ``[]``, an empty map stays
``{}``) and raw bodies (``fix_raw``: msgpack *bin*). :class:`MpEmptyMap`,
:class:`MpEmptyArray` and :class:`Bin` mark those.

JSON that Kong produces (``kong.log.serialize``, the ``Config`` of ``StartInstance``)
is written by lua-cjson: ``/`` escaped as ``\\/``, numbers with 16 significant digits,
and an empty table as ``{}`` unless it is marked as an array.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack


class _Marker:
    __slots__ = ()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return type(self).__name__


class MpEmptyMap(_Marker):
    """``mp_empty_map``: packed as an empty msgpack map."""


class MpEmptyArray(_Marker):
    """``mp_empty_array``: packed as an empty msgpack array."""


MP_EMPTY_MAP = MpEmptyMap()
MP_EMPTY_ARRAY = MpEmptyArray()


class Bin:
    """``fix_raw``: packed as msgpack bin. ``Bin(None)`` is what Kong builds when a PDK
    call that returns a body returned ``nil``: packing it fails inside Kong."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | str | None):
        self.data = data

    def __repr__(self) -> str:  # pragma: no cover
        return f"Bin({self.data!r})"


class _Null:
    """``ngx.null`` / ``cjson.null``: a value that is there and is null (a config field
    with no value). cjson writes ``null``; lua-MessagePack packs it as nil."""

    _inst = None

    def __new__(cls):
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:  # pragma: no cover
        return "null"

    def __bool__(self) -> bool:
        return False


NULL = _Null()


class JsonArray(list):
    """A Lua table carrying ``cjson.array_mt``: cjson writes it as ``[]`` even when empty."""


class LuaPackError(Exception):
    """lua-MessagePack raised while Kong packed a message (the Lua error Kong saw)."""


def lua_str(value: bytes | str) -> str:
    """A Lua string as Python text (bytes that are not UTF-8 survive via surrogateescape)."""
    if isinstance(value, str):
        return value
    return value.decode("utf-8", "surrogateescape")


def lua_bytes(value: bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogateescape")


def is_lua_string(value: Any) -> bool:
    return isinstance(value, (str, bytes))


def lua_type(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (str, bytes)):
        return "string"
    if isinstance(value, (dict, list, tuple, _Marker)):
        return "table"
    return "userdata"


def from_wire(value: Any) -> Any:
    """What lua-MessagePack makes of a decoded msgpack value: ``nil`` map values and
    ``nil`` keys vanish; arrays keep their holes (see :func:`to_wire`)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k is None or v is None:
                continue
            out[k] = from_wire(v)
        return out
    if isinstance(value, (list, tuple)):
        return [from_wire(v) for v in value]
    return value


def _number(value: float | int) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == math.floor(value) and abs(value) < 2**63:
        return int(value)
    return value


def to_wire(value: Any) -> Any:
    """The value Kong puts on the wire for a Lua value (see the module doc)."""
    if value is None or isinstance(value, bool):
        return value
    if value is NULL:
        return None
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return lua_str(value)  # a Lua string is packed as str, whatever it arrived as
    if isinstance(value, Bin):
        if value.data is None:
            raise LuaPackError("MessagePack.lua:126: attempt to get length of local 'str' (a nil value)")
        return lua_bytes(value.data)
    if isinstance(value, MpEmptyMap):
        return {}
    if isinstance(value, MpEmptyArray):
        return []
    if isinstance(value, (list, tuple)):
        # a Lua array: nil entries are holes
        present = [(i + 1, v) for i, v in enumerate(value) if v is not None]
        if not present:
            return []
        if present[-1][0] == len(present):
            return [to_wire(v) for _, v in present]
        return {i: to_wire(v) for i, v in present}
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if v is not None and k is not None]
        if not items:
            return []
        keys = [k for k, _ in items]
        if all(isinstance(k, (int, float)) and not isinstance(k, bool) and k > 0 for k in keys):
            numeric = sorted(_number(k) for k in keys)
            if numeric == list(range(1, len(numeric) + 1)):
                by_key = {_number(k): v for k, v in items}
                return [to_wire(by_key[i]) for i in numeric]
        return {(_wire_key(k)): to_wire(v) for k, v in items}
    raise LuaPackError(f"pack '{lua_type(value)}' is unimplemented")


def _wire_key(key: Any) -> Any:
    if isinstance(key, bytes):
        return lua_str(key)
    if isinstance(key, float):
        return _number(key)
    return key


# surrogateescape turns the text form of a non-UTF-8 Lua string back into its bytes
_PACKER_OPTS = dict(use_bin_type=True, unicode_errors="surrogateescape")


def pack_message(message: list) -> bytes:
    """Pack one RPC message the way Kong does (raises :class:`LuaPackError`)."""
    wire = [message[0], message[1], message[2], [to_wire(a) for a in message[3]]]
    return packb(wire)


def packb(wire: Any) -> bytes:
    return msgpack.packb(wire, **_PACKER_OPTS)


def new_unpacker() -> msgpack.Unpacker:
    """The reading side of Kong's socket (bin -> bytes, str -> str)."""
    return msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape",
                            max_buffer_size=1 << 31)


def lua_roundtrip(value: Any) -> Any:
    """A value as the plugin server gets it back after storing it in Kong (e.g.
    ``kong.ctx.shared.set`` then ``get``): what the msgpack decoder yields."""
    return msgpack.unpackb(packb(to_wire(from_wire(value))), raw=False, strict_map_key=False,
                           unicode_errors="surrogateescape")


# --------------------------------------------------------------------------- cjson


def _cjson_string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "/":
            out.append("\\/")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif o < 0x20 or o == 0x7F:
            out.append("\\u%04x" % o)
        elif 0xDC80 <= o <= 0xDCFF:  # raw byte of a non-UTF-8 Lua string
            out.append(chr(o - 0xDC00))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _cjson_number(n: float | int) -> str:
    if isinstance(n, bool):
        return "true" if n else "false"
    if isinstance(n, int) and abs(n) < 10**16:
        return str(n)
    f = float(n)
    if math.isnan(f) or math.isinf(f):
        raise ValueError("Cannot serialise number: must not be NaN or Infinity")
    text = "%.16g" % f
    return text


def cjson_encode(value: Any) -> str:
    """lua-cjson's ``cjson.encode`` (Kong's settings) of a Lua value."""
    if value is None or value is NULL:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _cjson_number(value)
    if isinstance(value, (str, bytes)):
        return _cjson_string(lua_str(value))
    if isinstance(value, Bin):
        return _cjson_string(lua_str(value.data or b""))
    if isinstance(value, MpEmptyArray) or isinstance(value, JsonArray) and not value:
        return "[]"
    if isinstance(value, MpEmptyMap):
        return "{}"
    if isinstance(value, (list, tuple)):
        present = [v for v in value if v is not None]
        if not present and not isinstance(value, JsonArray):
            return "{}"
        if len(present) != len(value):
            # holes: cjson refuses sparse arrays past its ratio; keep it simple as a map
            return "{" + ",".join(f'"{i + 1}":{cjson_encode(v)}' for i, v in enumerate(value) if v is not None) + "}"
        return "[" + ",".join(cjson_encode(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if v is not None]
        if not items:
            return "{}"
        keys = [k for k, _ in items]
        if all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in keys) and \
                sorted(keys) == list(range(1, len(keys) + 1)):
            return "[" + ",".join(cjson_encode(dict(items)[i]) for i in range(1, len(keys) + 1)) + "]"
        return "{" + ",".join(f"{_cjson_string(str(k))}:{cjson_encode(v)}" for k, v in items) + "}"
    raise ValueError(f"Cannot serialise {lua_type(value)}: type not supported")
