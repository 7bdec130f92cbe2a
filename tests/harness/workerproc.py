"""Unix-socket connections opened from a process of their own, as each nginx worker opens its own.

Each nginx worker is a process, so a plugin server can tell Kong's workers apart by the peer pid of a connection
(``SO_PEERCRED``); Tollgate does, to follow each worker's instance cache. The double's workers share one process:
every worker but the first opens its connections in a small helper process, which hands the connected socket back
over a socket pair (``SCM_RIGHTS``). The kernel keeps the helper's pid as the connection's peer.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import subprocess
import sys
import threading
from typing import Any

_HELPER = r"""
import errno, os, socket, sys
chan = socket.socket(fileno=int(sys.argv[1]))
buf = b""
while True:
    data = chan.recv(4096)
    if not data:
        break
    buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(line.decode())
        except OSError as e:
            chan.sendall(b"E%d\n" % (e.errno or errno.EIO))
        else:
            socket.send_fds(chan, [b"K\n"], [s.fileno()])
        finally:
            s.close()
"""


class WorkerProcess:
    """A helper process that connects on behalf of one worker of the double."""

    def __init__(self) -> None:
        self._chan, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._proc = subprocess.Popen([sys.executable, "-c", _HELPER, str(theirs.fileno())],
                                      pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _connect(self, path: str) -> socket.socket:
        with self._lock:
            self._chan.sendall(path.encode() + b"\n")
            msg, fds, _flags, _addr = socket.recv_fds(self._chan, 64, 1)
        if msg.startswith(b"K") and fds:
            return socket.socket(fileno=fds[0])
        for fd in fds:
            os.close(fd)
        code = int(msg[1:].strip() or errno.EIO) if msg.startswith(b"E") else errno.EIO
        raise OSError(code, os.strerror(code))

    async def open_unix_connection(self, path: str, **kwargs):
        sock = await asyncio.get_running_loop().run_in_executor(None, self._connect, path)
        return await asyncio.open_unix_connection(sock=sock, **kwargs)

    def close(self) -> None:
        self._chan.close()
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self._proc.kill()
            self._proc.wait()


def peer_pid(sock: Any) -> int | None:
    """The pid of the process at the other end of a unix-socket connection (what a plugin server sees)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    return struct.unpack("3i", raw)[0] or None
