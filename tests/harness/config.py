"""Kong's declarative configuration, as much of it as the double needs.

Accepts a decK-style dict (``_format_version: "3.0"``: services with nested routes and
plugins, top-level routes / plugins / consumers / upstreams) and builds the entities
Kong would hold in LMDB: ids (given, or derived deterministically), ``created_at``,
defaults, and the entity shape the PDK returns (``kong.router.get_route`` etc.; fields
that are null are absent, as they are in a DB-less Kong).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .luavalue import NULL, JsonArray

#: namespace of the ids the double derives for entities given without one
ID_NAMESPACE = uuid.UUID("6b1f7a8e-4a5b-4c2d-9e0f-7a1b2c3d4e5f")
DEFAULT_WS_ID = "0dc6f45b-8f8d-40d2-a504-473544ee190b"


class ConfigError(ValueError):
    """The declarative configuration was refused (as Kong would refuse it)."""


def derive_id(kind: str, *parts: Any) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, ":".join([kind, *map(str, parts)])))


@dataclass
class Service:
    id: str
    name: str | None
    protocol: str
    host: str
    port: int
    path: str | None = None
    retries: int = 5
    connect_timeout: int = 60000
    write_timeout: int = 60000
    read_timeout: int = 60000
    enabled: bool = True
    tags: list[str] | None = None
    created_at: int = 0
    updated_at: int = 0
    ws_id: str = DEFAULT_WS_ID

    def entity(self) -> dict[str, Any]:
        e: dict[str, Any] = {
            "name": self.name, "write_timeout": self.write_timeout, "ws_id": self.ws_id, "retries": self.retries,
            "protocol": self.protocol, "port": self.port, "host": self.host, "id": self.id,
            "created_at": self.created_at, "updated_at": self.updated_at, "enabled": self.enabled,
            "connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout,
        }
        if self.path is not None:
            e["path"] = self.path
        if self.tags:
            e["tags"] = list(self.tags)
        return {k: v for k, v in e.items() if v is not None}


@dataclass
class Route:
    id: str
    name: str | None
    service: Service | None
    paths: list[str] | None = None
    methods: list[str] | None = None
    hosts: list[str] | None = None
    headers: dict[str, list[str]] | None = None
    protocols: list[str] = field(default_factory=lambda: ["http", "https"])
    strip_path: bool = True
    preserve_host: bool = False
    regex_priority: int = 0
    path_handling: str = "v0"
    https_redirect_status_code: int = 426
    request_buffering: bool = True
    response_buffering: bool = True
    tags: list[str] | None = None
    created_at: int = 0
    updated_at: int = 0
    ws_id: str = DEFAULT_WS_ID

    def entity(self) -> dict[str, Any]:
        e: dict[str, Any] = {}
        if self.service is not None:
            e["service"] = {"id": self.service.id}
        e.update({
            "name": self.name, "ws_id": self.ws_id, "regex_priority": self.regex_priority, "id": self.id,
        })
        if self.paths is not None:
            e["paths"] = list(self.paths)
        if self.methods is not None:
            e["methods"] = list(self.methods)
        if self.hosts is not None:
            e["hosts"] = list(self.hosts)
        if self.headers is not None:
            e["headers"] = {k: list(v) for k, v in self.headers.items()}
        e.update({
            "path_handling": self.path_handling, "preserve_host": self.preserve_host,
            "protocols": list(self.protocols), "response_buffering": self.response_buffering,
            "request_buffering": self.request_buffering, "created_at": self.created_at,
            "updated_at": self.updated_at, "https_redirect_status_code": self.https_redirect_status_code,
            "strip_path": self.strip_path,
        })
        if self.tags:
            e["tags"] = list(self.tags)
        return {k: v for k, v in e.items() if v is not None}


@dataclass
class Consumer:
    id: str
    username: str | None = None
    custom_id: str | None = None
    tags: list[str] | None = None
    created_at: int = 0
    updated_at: int = 0
    #: the group names of the consumer's ``acls`` (the acl plugin's groups, not part of the entity), in order
    acl_groups: list[str] = field(default_factory=list)

    def entity(self) -> dict[str, Any]:
        e: dict[str, Any] = {"username": self.username, "created_at": self.created_at,
                             "updated_at": self.updated_at, "id": self.id, "custom_id": self.custom_id}
        if self.tags:
            e["tags"] = list(self.tags)
        return {k: v for k, v in e.items() if v is not None}


@dataclass
class KeyAuthCredential:
    id: str
    key: str
    consumer: Consumer
    ttl: int | None = None
    tags: list[str] | None = None
    created_at: int = 0

    def entity(self) -> dict[str, Any]:
        e: dict[str, Any] = {"created_at": self.created_at, "consumer": {"id": self.consumer.id}, "id": self.id,
                             "key": self.key}
        if self.ttl is not None:
            e["ttl"] = self.ttl
        if self.tags:
            e["tags"] = list(self.tags)
        return e


@dataclass
class Target:
    host: str
    port: int
    weight: int = 100


@dataclass
class Upstream:
    id: str
    name: str
    targets: list[Target]
    _next: int = 0

    def pick(self) -> Target | None:
        live = [t for t in self.targets if t.weight > 0]
        if not live:
            return None
        t = live[self._next % len(live)]
        self._next += 1
        return t


@dataclass
class PluginConfig:
    """A plugin entity as the plugins iterator sees it."""

    id: str
    name: str
    config: dict[str, Any]
    route: Route | None = None
    service: Service | None = None
    consumer: Consumer | None = None
    enabled: bool = True
    protocols: list[str] = field(default_factory=lambda: ["grpc", "grpcs", "http", "https"])
    instance_name: str | None = None
    created_at: int = 0
    #: the table Kong hands the handler (config + route_id... + __key__, __seq__), as worker 0 built it
    conf: dict[str, Any] | None = None
    #: the same per nginx worker: each worker builds its own plugins iterator, so each has its own ``__seq__``
    confs: list[dict[str, Any]] = field(default_factory=list)

    def conf_of(self, worker_id: int) -> dict[str, Any] | None:
        return self.confs[worker_id] if worker_id < len(self.confs) else self.conf

    @property
    def combo_key(self) -> tuple[str | None, str | None, str | None]:
        return (self.route.id if self.route else None, self.service.id if self.service else None,
                self.consumer.id if self.consumer else None)

    @property
    def scope(self) -> str:
        parts = [p for p, v in zip(("route", "service", "consumer"), self.combo_key) if v]
        return "+".join(parts) or "global"


@dataclass
class Declarative:
    services: list[Service] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    credentials: list[KeyAuthCredential] = field(default_factory=list)
    plugins: list[PluginConfig] = field(default_factory=list)
    upstreams: list[Upstream] = field(default_factory=list)
    ws_id: str = DEFAULT_WS_ID

    def consumer_by_id(self, cid: str) -> Consumer | None:
        return next((c for c in self.consumers if c.id == cid), None)

    def consumer_by_username(self, name: str) -> Consumer | None:
        return next((c for c in self.consumers if c.username == name), None)

    def credential_by_key(self, key: str) -> KeyAuthCredential | None:
        return next((c for c in self.credentials if c.key == key), None)

    def upstream_by_name(self, name: str) -> Upstream | None:
        return next((u for u in self.upstreams if u.name == name), None)


# ------------------------------------------------------------------------------------------- parsing


def _ref(items: list, ref: Any, what: str) -> Any:
    if ref is None:
        return None
    if isinstance(ref, dict):
        ref = ref.get("id") or ref.get("name") or ref.get("username")
    for it in items:
        if it.id == ref or getattr(it, "name", None) == ref or getattr(it, "username", None) == ref:
            return it
    raise ConfigError(f"{what} {ref!r} not found")


def parse_service_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "grpc", "grpcs", "tcp", "tls", "ws", "wss"):
        raise ConfigError(f"invalid url {url!r}")
    port = parts.port or (443 if parts.scheme in ("https", "grpcs", "wss", "tls") else 80)
    out: dict[str, Any] = {"protocol": parts.scheme, "host": parts.hostname, "port": port}
    if parts.path:
        out["path"] = parts.path
    return out


_SERVICE_KEYS = {"id", "name", "url", "protocol", "host", "port", "path", "retries", "connect_timeout",
                 "write_timeout", "read_timeout", "enabled", "tags", "routes", "plugins", "ca_certificates",
                 "client_certificate", "tls_verify", "tls_verify_depth"}
_ROUTE_KEYS = {"id", "name", "paths", "methods", "hosts", "headers", "protocols", "strip_path", "preserve_host",
               "regex_priority", "path_handling", "https_redirect_status_code", "request_buffering",
               "response_buffering", "tags", "plugins", "service", "snis", "sources", "destinations"}


def _check_keys(kind: str, d: dict, allowed: set) -> None:
    unknown = set(d) - allowed
    if unknown:
        raise ConfigError(f"{kind}: unknown field(s) {sorted(unknown)}")


def parse_declarative(doc: dict[str, Any], *, ws_id: str = DEFAULT_WS_ID, now: int | None = None) -> Declarative:
    """Parse a decK-style dict into entities (plugin configs are not yet validated)."""
    if not isinstance(doc, dict):
        raise ConfigError("declarative config must be a table")
    fmt = str(doc.get("_format_version", "3.0"))
    if fmt not in ("1.1", "2.1", "3.0"):
        raise ConfigError(f"unsupported _format_version {fmt!r}")
    now = int(time.time()) if now is None else now
    d = Declarative(ws_id=ws_id)
    pending_plugins: list[tuple[dict, dict]] = []  # (plugin dict, implicit scope refs)

    def mk_route(r: dict, service: Service | None) -> Route:
        _check_keys("route", r, _ROUTE_KEYS)
        name = r.get("name")
        rid = r.get("id") or derive_id("route", name or (service.name if service else ""), r.get("paths"),
                                       r.get("methods"), r.get("hosts"), len(d.routes))
        headers = r.get("headers")
        if headers is not None:
            headers = {k.lower(): (v if isinstance(v, list) else [v]) for k, v in headers.items()}
        route = Route(
            id=rid, name=name, service=service, paths=r.get("paths"), methods=r.get("methods"),
            hosts=r.get("hosts"), headers=headers, protocols=list(r.get("protocols", ["http", "https"])),
            strip_path=bool(r.get("strip_path", True)), preserve_host=bool(r.get("preserve_host", False)),
            regex_priority=int(r.get("regex_priority", 0)), path_handling=r.get("path_handling", "v0"),
            https_redirect_status_code=int(r.get("https_redirect_status_code", 426)),
            request_buffering=bool(r.get("request_buffering", True)),
            response_buffering=bool(r.get("response_buffering", True)), tags=r.get("tags"),
            created_at=now, updated_at=now, ws_id=ws_id,
        )
        if not (route.paths or route.methods or route.hosts or route.headers):
            raise ConfigError(f"route {name or rid}: must set one of 'methods', 'hosts', 'headers', 'paths'")
        for p in route.paths or []:
            if not (p.startswith("/") or p.startswith("~/")):
                raise ConfigError(f"route {name or rid}: invalid path {p!r}")
        for p in r.get("plugins", []) or []:
            pending_plugins.append((p, {"route": route.id}))
        return route

    for s in doc.get("services", []) or []:
        _check_keys("service", s, _SERVICE_KEYS)
        fields: dict[str, Any] = {}
        if "url" in s:
            fields.update(parse_service_url(s["url"]))
        for k in ("protocol", "host", "port", "path"):
            if k in s:
                fields[k] = s[k]
        if "host" not in fields:
            raise ConfigError(f"service {s.get('name')}: host or url required")
        fields.setdefault("protocol", "http")
        fields.setdefault("port", 443 if fields["protocol"] == "https" else 80)
        name = s.get("name")
        svc = Service(
            id=s.get("id") or derive_id("service", name or fields["host"], len(d.services)), name=name,
            protocol=fields["protocol"], host=fields["host"], port=int(fields["port"]), path=fields.get("path"),
            retries=int(s.get("retries", 5)), connect_timeout=int(s.get("connect_timeout", 60000)),
            write_timeout=int(s.get("write_timeout", 60000)), read_timeout=int(s.get("read_timeout", 60000)),
            enabled=bool(s.get("enabled", True)), tags=s.get("tags"), created_at=now, updated_at=now, ws_id=ws_id,
        )
        d.services.append(svc)
        for r in s.get("routes", []) or []:
            d.routes.append(mk_route(r, svc))
        for p in s.get("plugins", []) or []:
            pending_plugins.append((p, {"service": svc.id}))

    for r in doc.get("routes", []) or []:
        svc = _ref(d.services, r.get("service"), "service") if r.get("service") is not None else None
        d.routes.append(mk_route(r, svc))

    for c in doc.get("consumers", []) or []:
        if not c.get("username") and not c.get("custom_id"):
            raise ConfigError("consumer: at least one of these fields must be non-empty: 'custom_id', 'username'")
        cons = Consumer(id=c.get("id") or derive_id("consumer", c.get("username") or c.get("custom_id")),
                        username=c.get("username"), custom_id=c.get("custom_id"), tags=c.get("tags"),
                        created_at=now, updated_at=now)
        d.consumers.append(cons)
        for acl in c.get("acls", []) or []:
            if not acl.get("group"):
                raise ConfigError(f"consumer {cons.username}: acl without group")
            cons.acl_groups.append(acl["group"])
        for cred in c.get("keyauth_credentials", []) or []:
            key = cred.get("key")
            if not key:
                raise ConfigError(f"consumer {cons.username}: key-auth credential without key")
            d.credentials.append(KeyAuthCredential(id=cred.get("id") or derive_id("keyauth", key), key=key,
                                                   consumer=cons, ttl=cred.get("ttl"), tags=cred.get("tags"),
                                                   created_at=now))
        for p in c.get("plugins", []) or []:
            pending_plugins.append((p, {"consumer": cons.id}))

    for cred in doc.get("keyauth_credentials", []) or []:
        cons = _ref(d.consumers, cred.get("consumer"), "consumer")
        d.credentials.append(KeyAuthCredential(id=cred.get("id") or derive_id("keyauth", cred["key"]),
                                               key=cred["key"], consumer=cons, created_at=now))

    for u in doc.get("upstreams", []) or []:
        targets = []
        for t in u.get("targets", []) or []:
            host, _, port = str(t["target"]).rpartition(":")
            if not host:
                host, port = port, "8000"
            targets.append(Target(host=host, port=int(port), weight=int(t.get("weight", 100))))
        d.upstreams.append(Upstream(id=u.get("id") or derive_id("upstream", u["name"]), name=u["name"],
                                    targets=targets))

    for p in doc.get("plugins", []) or []:
        pending_plugins.append((p, {}))

    seen_keys: set[tuple] = set()
    for p, implicit in pending_plugins:
        if "name" not in p:
            raise ConfigError("plugin without name")
        route = _ref(d.routes, implicit.get("route") or p.get("route"), "route") \
            if (implicit.get("route") or p.get("route")) else None
        service = _ref(d.services, implicit.get("service") or p.get("service"), "service") \
            if (implicit.get("service") or p.get("service")) else None
        consumer = _ref(d.consumers, implicit.get("consumer") or p.get("consumer"), "consumer") \
            if (implicit.get("consumer") or p.get("consumer")) else None
        pc = PluginConfig(
            id=p.get("id") or derive_id("plugin", p["name"], route.id if route else "", service.id if service else "",
                                         consumer.id if consumer else ""),
            name=p["name"], config=dict(p.get("config") or {}), route=route, service=service, consumer=consumer,
            enabled=bool(p.get("enabled", True)),
            protocols=list(p.get("protocols", ["grpc", "grpcs", "http", "https"])),
            instance_name=p.get("instance_name"), created_at=now,
        )
        key = (pc.name, *pc.combo_key)
        if key in seen_keys:
            raise ConfigError(f"uniqueness violation: 'plugins' entity with name {pc.name!r} and the same "
                              f"route/service/consumer scope already declared")
        seen_keys.add(key)
        d.plugins.append(pc)
    return d


# ------------------------------------------------------------------------------------------- schema


def config_record_fields(schema: Any) -> list[dict] | None:
    """The ``config`` record's fields of a plugin schema (Kong's layout), or None."""
    if not isinstance(schema, dict):
        return None
    for f in schema.get("fields", []) or []:
        if isinstance(f, dict) and "config" in f:
            spec = f["config"]
            if isinstance(spec, dict):
                return list(spec.get("fields", []) or [])
    return None


def _field_items(fields: list) -> list[tuple[str, dict]]:
    out = []
    for f in fields:
        if isinstance(f, dict):
            for k, v in f.items():
                out.append((k, v if isinstance(v, dict) else {}))
    return out


_TYPES = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list, tuple), "set": (list, tuple), "map": (dict,), "record": (dict,), "json": (object,),
    "foreign": (object,),
}


def process_config(fields: list[dict] | None, config: dict[str, Any], where: str) -> dict[str, Any]:
    """Kong's schema processing of a plugin config: defaults, nulls for absent fields,
    unknown fields refused, basic type checks, arrays marked as arrays (``cjson.array_mt``)."""
    if fields is None:
        return dict(config)
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected a record")
    known = _field_items(fields)
    names = {k for k, _ in known}
    unknown = set(config) - names
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    out: dict[str, Any] = {}
    for name, spec in known:
        here = f"{where}.{name}"
        if name in config and config[name] is not None:
            value = config[name]
        elif "default" in spec and spec["default"] is not None:
            value = _copy(spec["default"])
        elif spec.get("type") == "record" and name not in config:
            value = process_config(spec.get("fields", []), {}, here)
            out[name] = value
            continue
        else:
            if spec.get("required") and name not in config:
                raise ConfigError(f"{here}: required field missing")
            out[name] = NULL
            continue
        out[name] = _process_value(spec, value, here)
    return out


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_copy(x) for x in v]
    return v


def _process_value(spec: dict, value: Any, where: str) -> Any:
    t = spec.get("type")
    if t in _TYPES and t not in ("json", "foreign"):
        ok = isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
        if t == "integer" and isinstance(value, float) and value == int(value):
            value, ok = int(value), True
        if not ok:
            raise ConfigError(f"{where}: expected {'an' if t[0] in 'aeiou' else 'a'} {t}")
    if "one_of" in spec and value not in spec["one_of"]:
        raise ConfigError(f"{where}: expected one of: {', '.join(map(str, spec['one_of']))}")
    if "between" in spec and t in ("integer", "number") and not spec["between"][0] <= value <= spec["between"][1]:
        low, high = spec["between"]
        raise ConfigError(f"{where}: value should be between {low} and {high}")   # Kong's own wording
    if t == "record":
        return process_config(spec.get("fields", []), value, where)
    if t in ("array", "set"):
        elements = spec.get("elements") or {}
        return JsonArray(_process_value(elements, v, f"{where}[{i + 1}]") if elements else v
                         for i, v in enumerate(value))
    if t == "map":
        values = spec.get("values") or {}
        return {k: (_process_value(values, v, f"{where}.{k}") if values else v) for k, v in value.items()}
    return value
