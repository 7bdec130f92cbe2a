"""Fault injection on Kong's side of the socket.

``kong.faults.fail_event("tollgate-token-limit", "access")`` makes the next ``access``
event of that plugin fail at ``HandleEvent`` as if the socket broke; ``at_step=K``
fails the K-th ``Step`` of the event instead (the steps before it ran: headers already
set stay set). Modes:

* ``"socket"`` (default): the connection breaks before the message is written
  (Kong gets ``closed``);
* ``"socket_after_send"``: the message reaches the server, the answer is lost
  (Kong gets ``no data``);
* ``"timeout"``: the message is sent and no answer comes within Kong's socket timeout
  (``KongDouble(rpc_timeout=...)`` or kong.conf's ``nginx_http_lua_socket_read_timeout``);
* ``"error"``: the call fails with ``message`` as if the server answered an error;
* ``"connect"``: connecting fails (``trying to connect: <message>``).

Kong logs each failure and proxies the request without the plugin's remaining effect.
``fail_start(plugin)`` makes ``plugin.StartInstance`` fail instead (then the request
gets 500, as in Kong).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODES = ("socket", "socket_after_send", "timeout", "error", "connect")


@dataclass
class Fault:
    plugin: str
    phase: str | None
    step: int | None
    mode: str = "socket"
    times: int | None = 1
    message: str = "injected fault"
    method: str | None = None
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass
class Faults:
    active: list[Fault] = field(default_factory=list)

    def fail_event(self, plugin: str, phase: str = "access", *, at_step: int | None = 0, mode: str = "socket",
                   times: int | None = 1, message: str = "injected fault") -> Fault:
        """Fail an event of ``plugin`` in ``phase`` at HandleEvent (``at_step=0``), at its
        K-th Step (``at_step=K``) or at any call of the event (``at_step=None``).
        ``times=None`` keeps failing."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        f = Fault(plugin=plugin, phase=phase, step=at_step, mode=mode, times=times, message=message)
        self.active.append(f)
        return f

    def fail_start(self, plugin: str, *, mode: str = "error", times: int | None = 1,
                   message: str = "injected StartInstance failure") -> Fault:
        f = Fault(plugin=plugin, phase="start", step=None, mode=mode, times=times, message=message,
                  method="plugin.StartInstance")
        self.active.append(f)
        return f

    def clear(self) -> None:
        self.active.clear()

    def _match(self, info: Any, method: str) -> Fault | None:
        for f in self.active:
            if f.exhausted or f.plugin != info.plugin:
                continue
            if f.method is not None and f.method != method:
                continue
            if f.phase is not None and f.phase != info.phase:
                continue
            if f.step is not None and f.step != info.step:
                continue
            f.hits += 1
            return f
        return None
