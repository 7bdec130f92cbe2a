"""A test double of Kong for testing external (plugin-server) plugins. NOT a gateway.

Kong cannot run on the build machines, so the suite tests plugin servers against this
double: it plays Kong's side of the plugin-server protocol (MessagePack-RPC over unix
sockets) the way Kong OSS 3.9.3 does, checked against a capture of real Kong
(``tests/harness/traces``) and Kong's source (``kong/runloop/plugin_servers/``,
``kong/pdk/``), and proxies real HTTP so real clients can be pointed at it.

What it models:

* discovery like ``kong start``: each entry's query command (no shell), its JSON dump,
  3.9's "first plugin of each dump" (``kong_version="3.8"``: all of them), ``X plugin is
  enabled but not installed``; start commands supervised like Kong (respawn at most
  once a second, SIGTERM on stop);
* a decK-style declarative config: services, routes, consumers with key-auth keys,
  plugins scoped global / service / route / consumer with Kong's precedence and
  priority order; a key-auth stand-in (priority 1250);
* the RPC per nginx worker: pooled connections, rising msg ids, typed ``Step*``
  answers, ``{"EventId": n}`` without ``Data`` for nil, notifications (``serverPid``),
  the instance cache keyed by plugin id (replaced when ``__seq__`` changes),
  "no plugin instance" -> restart the instance and repeat the event, StartInstance
  failure -> 500, exit/error ending the event without a Step;
* the PDK against a modelled request with Kong's quirks: ``fix_mmap`` multimaps,
  ``fix_raw`` bytes, empty tables coming back as ``[]``, bodies over
  ``client_body_buffer_size`` failing inside Kong (500, event left waiting), the
  ``log`` phase run in a timer on saved data (``ngx.var`` refused there);
* buffering: any plugin with a ``response`` phase on the route makes Kong buffer the
  upstream answer (``kong.nginx.set_ctx("buffered_proxying", false)`` in access turns
  it off); otherwise the answer streams chunk by chunk;
* fail-open: plugin-server errors, timeouts and broken sockets are logged and the
  request is proxied without the plugin's remaining effect (``faults`` injects them);
  the socket timeouts come from kong.conf's ``nginx_http_lua_socket_*_timeout``
  (``kong_conf=``, see ``kongconf.py``; 60 s each by default);
* counters of RPC round trips per request / plugin / phase (``stats``) and an optional
  record of every message (``messages``).

Use::

    async with KongDouble(entries, config) as kong:
        ...  # point clients at kong.url

or :class:`KongDoubleThread` from synchronous code. Fixtures: ``tests/harness/fixtures.py``.
"""

from .bundled import BundledPlugin, KeyAuth
from .config import ConfigError
from .errors import KongLuaError, KongStartError
from .faults import Fault, Faults
from .kong import KongDouble, LogRecord, SimpleResponse, Worker
from .runner import KongDoubleThread
from .servers import PluginServerEntry, Supervisor
from .stats import RequestStats, Stats

__all__ = [
    "BundledPlugin", "ConfigError", "Fault", "Faults", "KeyAuth", "KongDouble", "KongDoubleThread", "KongLuaError",
    "KongStartError", "LogRecord", "PluginServerEntry", "RequestStats", "SimpleResponse", "Stats", "Supervisor",
    "Worker",
]
