"""Process settings, from command-line flags with environment fallbacks.

One place for every knob of the Tollgate process so that the CLI, the Docker image
and the tests configure it the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"TOLLGATE_{name}", default)


@dataclass
class Settings:
    socket_dir: str = field(default_factory=lambda: _env("SOCKET_DIR", "/usr/local/kong/tollgate"))
    plugins_dir: str | None = field(default_factory=lambda: _env("PLUGINS_DIR"))
    relay_host: str = field(default_factory=lambda: _env("RELAY_HOST", "127.0.0.1"))
    relay_port: int = field(default_factory=lambda: int(_env("RELAY_PORT", "8081")))
    status_host: str = field(default_factory=lambda: _env("STATUS_HOST", "127.0.0.1"))
    status_port: int = field(default_factory=lambda: int(_env("STATUS_PORT", "8082")))
    # When set, the status listener's data (/metrics, /spend, /usage, /dashboard/data) needs this bearer token:
    # set it whenever status_host is reachable from other machines.
    status_token: str | None = field(default_factory=lambda: _env("STATUS_TOKEN") or None)
    # How far back the in-process usage record (dashboard, `tollgate usage`) keeps minute buckets.
    usage_retention: float = field(default_factory=lambda: float(_env("USAGE_RETENTION", "86400")))
    redis_url: str | None = field(default_factory=lambda: _env("REDIS_URL"))
    log_level: str = field(default_factory=lambda: _env("LOG_LEVEL", "info"))
    # Sync (kong-pdk style) handlers run in threads; this bounds how many run at once.
    sync_handler_threads: int = field(default_factory=lambda: int(_env("SYNC_HANDLER_THREADS", "128")))
    # An event Kong stops answering (e.g. a get_var in the log timer) is dropped after this.
    event_timeout: float = field(default_factory=lambda: float(_env("EVENT_TIMEOUT", "120")))
    # A peer of the plugin sockets that starts a message has this long to send all of it; and the messages started
    # and not yet complete may hold this many bytes on all connections together. Kong writes each message at once.
    socket_message_timeout: float = field(default_factory=lambda: float(_env("SOCKET_MESSAGE_TIMEOUT", "30")))
    socket_backlog_bytes: int = field(default_factory=lambda: int(_env("SOCKET_BACKLOG_BYTES", "268435456")))
    # How long an attachment waits for its request to reach the relay.
    attachment_ttl: float = field(default_factory=lambda: float(_env("ATTACHMENT_TTL", "300")))
    # The plugin sockets: whoever can connect to them can act as Kong (and have requests attached), so they are
    # created for their owner and one group only. Kong's nginx workers must be able to connect: run Tollgate as the
    # user they run as (kong.conf nginx_user; `kong` in the official image), or give their group here.
    socket_mode: int = field(default_factory=lambda: int(_env("SOCKET_MODE", "0660"), 8))
    socket_group: str | None = field(default_factory=lambda: _env("SOCKET_GROUP"))
    # The local embeddings model (semantic cache): where its int8 build is cached (default
    # $XDG_CACHE_HOME/tollgate/models), and how many threads one embedding may use. 1 by default: a second thread
    # helps only while the other cores are idle, and on a gateway they are serving Kong.
    model_cache_dir: str | None = field(default_factory=lambda: _env("MODEL_CACHE_DIR") or None)
    embeddings_threads: int = field(default_factory=lambda: int(_env("EMBEDDINGS_THREADS", "1")))
