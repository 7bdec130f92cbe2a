"""Header lists as nginx keeps them (``ngx.req`` for the request, ``ngx.header`` for the
response): ordered, case-insensitive, several values per name; read back as the Lua
table ``ngx.req.get_headers()`` returns (lower-cased names, a string or a list)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from .luavalue import lua_str

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer",
    "transfer-encoding", "upgrade",
})


def norm(name: str) -> str:
    """nginx finds ``x_custom`` and ``X-Custom`` alike (``$http_x_custom``)."""
    return lua_str(name).lower().replace("_", "-")


def normalize_multi_header(value: Any) -> str | list[str]:
    """Kong's ``checks.normalize_multi_header``: numbers and booleans become strings."""
    if isinstance(value, (list, tuple)):
        return [_header_str(v) for v in value]
    return _header_str(value)


def _header_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v == int(v):
        return str(int(v))
    if isinstance(v, (int, float)):
        return str(v)
    return lua_str(v)


class Headers:
    """An ordered multi-map of header lines."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()):
        self._items: list[tuple[str, str]] = [(lua_str(k), lua_str(v)) for k, v in items]

    def copy(self) -> "Headers":
        return Headers(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        n = norm(name)
        return any(norm(k) == n for k, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def get_all(self, name: str) -> list[str]:
        n = norm(name)
        return [v for k, v in self._items if norm(k) == n]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def set(self, name: str, value: str | list[str]) -> None:
        """``ngx.req.set_header`` / ``ngx.header[name] = value``: replace every line."""
        self.clear(name)
        if isinstance(value, list):
            for v in value:
                self._items.append((lua_str(name), lua_str(v)))
        else:
            self._items.append((lua_str(name), lua_str(value)))

    def add(self, name: str, value: str) -> None:
        self._items.append((lua_str(name), lua_str(value)))

    def clear(self, name: str) -> None:
        n = norm(name)
        self._items = [(k, v) for k, v in self._items if norm(k) != n]

    def lua_table(self, redact: bool = False) -> dict[str, Any]:
        """``ngx.req.get_headers()``: lower-cased names; one value as a string, several as a list."""
        out: dict[str, Any] = {}
        for k, v in self._items:
            key = k.lower()
            if key in out:
                prev = out[key]
                if isinstance(prev, list):
                    prev.append(v)
                else:
                    out[key] = [prev, v]
            else:
                out[key] = v
        return out

    def __repr__(self) -> str:  # pragma: no cover
        return f"Headers({self._items!r})"
