"""Plugin config schemas in Kong's own schema language, and a validator for them.

The same field list is sent to Kong by the query command (so Kong validates configs in
decK files and the Admin API) and checked again here when an instance starts (so a
config that reached us some other way still cannot run unchecked). Defaults are filled
in both places. Vault references in ``referenceable`` fields are resolved here (`vaults`).
"""

from __future__ import annotations

import copy
from typing import Any

from . import vaults

Field = dict[str, dict[str, Any]]


class SchemaError(ValueError):
    """A config does not match its plugin's schema; ``errors`` maps field paths to messages."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in sorted(errors.items())))


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "set": (list, tuple),
    "map": (dict,),
    "record": (dict,),
    "json": (dict, list, str, int, float, bool),
}


def validate(fields: list[Field], config: dict[str, Any] | None) -> dict[str, Any]:
    """Check ``config`` against a record's ``fields``; return a copy with defaults filled."""
    errors: dict[str, str] = {}
    result = _record(fields, config if config is not None else {}, "", errors)
    if errors:
        raise SchemaError(errors)
    return result


def _record(fields: list[Field], value: Any, path: str, errors: dict[str, str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        errors[path or "config"] = "expected a record"
        return {}
    known = set()
    out: dict[str, Any] = {}
    for entry in fields:
        (name, spec), = entry.items()
        known.add(name)
        out[name] = _value(spec, value.get(name), f"{path}.{name}" if path else name, errors)
    for name in value:
        if name not in known and not name.startswith("__") and name not in _KONG_META:
            errors[f"{path}.{name}" if path else name] = "unknown field"
    return out


# Kong adds these to every plugin config it sends (scope ids, cache keys).
_KONG_META = {"route_id", "service_id", "consumer_id", "consumer_group_id"}


def _value(spec: dict[str, Any], value: Any, path: str, errors: dict[str, str]) -> Any:
    # Lua sends an empty table where Python means "nothing"; an empty list for a record is the same.
    if value is None or (value == [] and spec.get("type") in ("record", "map")):
        if "default" in spec:
            value = copy.deepcopy(spec["default"])
        elif spec.get("type") == "record" and not spec.get("required"):
            value = {}
        if value is None:
            if spec.get("required"):
                errors[path] = "required field missing"
            return None
    kind = spec.get("type", "string")
    allowed = _TYPES.get(kind)
    if allowed is None:
        errors[path] = f"unknown type {kind!r} in schema"
        return value
    if isinstance(value, bool) and kind in ("integer", "number"):
        errors[path] = f"expected {kind}"
        return value
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, allowed):
        errors[path] = f"expected {kind}"
        return value
    if kind == "record":
        return _record(spec.get("fields", []), value, path, errors)
    if kind in ("array", "set"):
        element = spec.get("elements", {"type": "string"})
        items = [_value(element, item, f"{path}[{i}]", errors) for i, item in enumerate(value)]
        _check_len(spec, items, path, errors)
        return items
    if kind == "map":
        key_spec = spec.get("keys", {"type": "string"})
        value_spec = spec.get("values", {"type": "string"})
        return {
            _value(key_spec, k, f"{path}.{k}", errors): _value(value_spec, v, f"{path}.{k}", errors)
            for k, v in value.items()
        }
    if spec.get("referenceable") and vaults.is_reference(value):
        try:
            value = vaults.resolve(value)
        except vaults.VaultError as exc:
            errors[path] = str(exc)
            return None
    _check_scalar(spec, value, path, errors)
    return value


def _check_len(spec: dict[str, Any], value: Any, path: str, errors: dict[str, str]) -> None:
    if "len_min" in spec and len(value) < spec["len_min"]:
        errors[path] = f"length must be at least {spec['len_min']}"
    if "len_max" in spec and len(value) > spec["len_max"]:
        errors[path] = f"length must be at most {spec['len_max']}"


def _check_scalar(spec: dict[str, Any], value: Any, path: str, errors: dict[str, str]) -> None:
    if "one_of" in spec and value not in spec["one_of"]:
        errors[path] = "expected one of: " + ", ".join(map(str, spec["one_of"]))
    if "between" in spec:
        low, high = spec["between"]
        if not low <= value <= high:
            errors[path] = f"value should be between {low} and {high}"
    if "gt" in spec and not value > spec["gt"]:
        errors[path] = f"value must be greater than {spec['gt']}"
    if isinstance(value, str):
        _check_len(spec, value, path, errors)
