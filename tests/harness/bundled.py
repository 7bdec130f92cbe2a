"""Stand-ins for Kong's bundled (Lua) plugins. They run inside the double (no RPC) and
act on the request through the same PDK functions an external plugin reaches.

Modelled (3.9.3 sources):

* ``key-auth`` (``kong/plugins/key-auth/handler.lua``): key from the configured header names
  (then the query string, then the body when asked), 401 with Kong's error template
  (``No API key found in request`` / ``Unauthorized`` / ``Duplicate API key found``,
  ``WWW-Authenticate: Key``), on success ``kong.client.authenticate`` and the
  ``X-Consumer-*`` / ``X-Credential-Identifier`` upstream headers.
* ``acl`` (``kong/plugins/acl/handler.lua`` and ``groups.lua``): the consumer's groups are its
  ``acls`` (decK ``consumers[].acls[{group}]``); ``deny`` (when it has entries) or ``allow``
  decides; 403 ``You cannot consume this service`` (401 without consumer or credential); when
  admitted, ``X-Consumer-Groups`` (the consumer's groups, ``", "``-joined; empty when it has
  none) replaces the client's header unless ``hide_groups_header``. With no consumer,
  ``authenticated_groups`` (``kong.ctx.shared``, then ``ngx.ctx``) stand in, sent as
  ``X-Authenticated-Groups``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import KongLuaError
from .pdk import PDK, PdkCall

if TYPE_CHECKING:  # pragma: no cover
    from .kong import KongDouble
    from .request import RequestState


class BundledPlugin:
    """Base of an in-process plugin: ``priority``, ``schema`` (Kong layout) and async
    phase methods ``access(kong, req, conf)`` etc."""

    name = "bundled"
    priority = 0
    version = "3.9.3"
    phases: tuple[str, ...] = ()
    schema: dict[str, Any] = {"name": "bundled", "fields": [{"config": {"type": "record", "fields": []}}]}
    external = False

    def has_phase(self, phase: str) -> bool:
        return phase in self.phases

    async def run(self, phase: str, kong: "KongDouble", req: "RequestState", conf: dict[str, Any]) -> None:
        await getattr(self, phase)(kong, req, conf)

    def pdk(self, kong: "KongDouble", req: "RequestState", phase: str, name: str, *args: Any) -> Any:
        return PDK[name](PdkCall(req=req, phase=phase, plugin_name=self.name, kong=kong), *args)


class KeyAuth(BundledPlugin):
    name = "key-auth"
    priority = 1250
    phases = ("access",)
    schema = {"name": "key-auth", "fields": [{"config": {"type": "record", "fields": [
        {"key_names": {"type": "array", "elements": {"type": "string"}, "default": ["apikey"], "required": True}},
        {"hide_credentials": {"type": "boolean", "default": False, "required": True}},
        {"anonymous": {"type": "string"}},
        {"key_in_header": {"type": "boolean", "default": True, "required": True}},
        {"key_in_query": {"type": "boolean", "default": True, "required": True}},
        {"key_in_body": {"type": "boolean", "default": False, "required": True}},
        {"run_on_preflight": {"type": "boolean", "default": True, "required": True}},
        {"realm": {"type": "string"}},
    ]}}]}

    async def access(self, kong: "KongDouble", req: "RequestState", conf: dict[str, Any]) -> None:
        p = lambda name, *a: self.pdk(kong, req, "access", name, *a)  # noqa: E731
        if not conf.get("run_on_preflight") and req.method == "OPTIONS":
            return
        if conf.get("anonymous"):
            if req.ngx_ctx.get("authenticated_credential"):
                return
            ok, _err = self._authenticate(kong, req, conf, p)
            if not ok:
                consumer = p("kong.client.load_consumer", conf["anonymous"], True)
                if consumer is None:
                    raise KongLuaError(f"anonymous consumer {conf['anonymous']} is configured but doesn't exist")
                self._set_consumer(p, consumer, None)
            return
        ok, err = self._authenticate(kong, req, conf, p)
        if not ok:
            p("kong.response.error", err["status"], err["message"], err.get("headers"))

    def _authenticate(self, kong: "KongDouble", req: "RequestState", conf: dict[str, Any], p: Any) -> tuple:
        realm = conf.get("realm")
        www = f'Key realm="{realm}"' if realm else "Key"
        headers = req.headers.lua_table()
        query = req.lua_query()
        key = None
        body = None
        for name in conf.get("key_names") or []:
            v = None
            if conf.get("key_in_header"):
                v = headers.get(name.lower())
            if v is None and conf.get("key_in_query"):
                v = query.get(name)
            if v is None and conf.get("key_in_body"):
                if body is None:
                    body = p("kong.request.get_body") or {}
                v = body.get(name) if isinstance(body, dict) else None
            if isinstance(v, str):
                key = v
                if conf.get("hide_credentials"):
                    p("kong.service.request.clear_query_arg", name)
                    p("kong.service.request.clear_header", name)
                break
            if isinstance(v, list):
                return False, {"status": 401, "message": "Duplicate API key found",
                               "headers": {"WWW-Authenticate": www}}
        if not key:
            return False, {"status": 401, "message": "No API key found in request",
                           "headers": {"WWW-Authenticate": www}}
        credential = kong.declarative.credential_by_key(key)
        if credential is None or credential.ttl == 0:
            return False, {"status": 401, "message": "Unauthorized", "headers": {"WWW-Authenticate": www}}
        consumer = p("kong.client.load_consumer", credential.consumer.id)
        self._set_consumer(p, consumer, credential.entity())
        return True, None

    @staticmethod
    def _set_consumer(p: Any, consumer: dict | None, credential: dict | None) -> None:
        p("kong.client.authenticate", consumer, credential)
        for header, value in (("X-Consumer-ID", consumer and consumer.get("id")),
                              ("X-Consumer-Custom-ID", consumer and consumer.get("custom_id")),
                              ("X-Consumer-Username", consumer and consumer.get("username")),
                              ("X-Credential-Identifier", credential and credential.get("id"))):
            if value:
                p("kong.service.request.set_header", header, value)
            else:
                p("kong.service.request.clear_header", header)
        if credential:
            p("kong.service.request.clear_header", "X-Anonymous-Consumer")
        else:
            p("kong.service.request.set_header", "X-Anonymous-Consumer", True)


class Acl(BundledPlugin):
    name = "acl"
    priority = 950
    phases = ("access",)
    schema = {"name": "acl", "fields": [{"config": {"type": "record", "fields": [
        {"allow": {"type": "array", "elements": {"type": "string"}}},
        {"deny": {"type": "array", "elements": {"type": "string"}}},
        {"hide_groups_header": {"type": "boolean", "required": True, "default": False}},
        {"always_use_authenticated_groups": {"type": "boolean", "required": True, "default": False}},
    ]}}]}

    async def access(self, kong: "KongDouble", req: "RequestState", conf: dict[str, Any]) -> None:
        p = lambda name, *a: self.pdk(kong, req, "access", name, *a)  # noqa: E731
        deny = conf.get("deny") or []
        listed, denying = (deny, True) if deny else (conf.get("allow") or [], False)
        consumer = p("kong.client.get_consumer") or {}
        credential = p("kong.client.get_credential")
        consumer_id = consumer.get("id") or (credential or {}).get("consumer_id")
        groups: list[str] | None = None
        if not consumer_id or not credential or conf.get("always_use_authenticated_groups"):
            groups = self._authenticated_groups(req)
        if groups is None and not consumer_id:
            if credential:
                return p("kong.response.error", 403, "You cannot consume this service")
            return p("kong.response.error", 401)
        header = "X-Authenticated-Groups"
        if groups is None:
            entity = kong.declarative.consumer_by_id(consumer_id)
            groups = list(entity.acl_groups) if entity is not None else []
            header = "X-Consumer-Groups"
        in_group = any(g in groups for g in listed)
        if in_group if denying else not in_group:
            return p("kong.response.error", 403, "You cannot consume this service")
        if not conf.get("hide_groups_header"):
            p("kong.service.request.set_header", header, ", ".join(groups))

    @staticmethod
    def _authenticated_groups(req: "RequestState") -> list[str] | None:
        groups = req.ctx_shared.get("authenticated_groups")
        if not isinstance(groups, list):
            groups = req.ngx_ctx.get("authenticated_groups")
        return [str(g) for g in groups] if isinstance(groups, list) else None


BUNDLED: dict[str, BundledPlugin] = {"key-auth": KeyAuth(), "acl": Acl()}
