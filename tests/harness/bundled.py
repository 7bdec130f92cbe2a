"""Stand-ins for Kong's bundled (Lua) plugins. They run inside the double (no RPC) and
act on the request through the same PDK functions an external plugin reaches.

Only ``key-auth`` is modelled (``kong/plugins/key-auth/handler.lua`` of 3.9.3): key from
the configured header names (then the query string, then the body when asked), 401 with
Kong's error template (``No API key found in request`` / ``Unauthorized`` /
``Duplicate API key found``, ``WWW-Authenticate: Key``), on success
``kong.client.authenticate`` and the ``X-Consumer-*`` / ``X-Credential-Identifier``
upstream headers.
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

    @staticmethod
    def pdk(kong: "KongDouble", req: "RequestState", phase: str, name: str, *args: Any) -> Any:
        return PDK[name](PdkCall(req=req, phase=phase, plugin_name="key-auth", kong=kong), *args)


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


BUNDLED: dict[str, BundledPlugin] = {"key-auth": KeyAuth()}
