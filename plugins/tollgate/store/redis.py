"""The Redis store (``strategy: redis``): state shared by every Kong node.

Plain Redis, Sentinel or Cluster through redis-py's asyncio client. Every check-and-change is one
Lua script (`tollgate.store.scripts`), so it is atomic and costs one round trip; on a plain server
the scripts (every request's reservations and settlements) travel over one pipelined connection of
`tollgate.store.resp` instead, at a tenth of redis-py's CPU per call, and `reserve_in_turn` makes
the reservations of all the limiting plugins of a request in one script; their settlements, and those of the other
requests that end in the same event-loop turn, go in one script too (`Store.settle_all`). Timeouts are short and
every call has a deadline: an unreachable Redis shows up fast as `StoreUnavailable`, which plugins
map to ``fail_open``, instead of holding requests.

Failovers: Redis replicates asynchronously, so a master that hands over (Sentinel) or dies can lose the last
writes it acknowledged, and a limit then forgets what it admitted. Behind Sentinel, every script that writes is
therefore followed, in the same round trip, by ``WAIT`` for every replica the master has (`replicas.ReplicaCount`):
a write counts only once they all hold it, and one they do not confirm within the socket timeout fails as
`StoreUnavailable` (the plugin's ``fail_open`` decides). The price is availability: after a failover writes fail
until the old master has rejoined as a replica (seconds), and after a replica dies until the Sentinels mark it down.
``wait_replicas=0`` turns this off (a failover may then let requests past a limit); a number fixes the count.

Reservations are recorded (a ledger key beside their buckets, in their hash slot), and a settlement applies only
while the record is there, removing it: a call cut after its script may have run (the deadline, a lost connection,
replicas that did not confirm) can be repeated, and a reservation it may have made given back, without counting
anything twice (`StoreUnavailable.doubtful`).

Keys: ``<prefix>`` (default ``tollgate:``) + a kind letter + the caller's key, never adding braces
before the caller's own ``{hash tag}``, so Cluster still routes by it.

Vectors: this Redis has no vector search, so each node keeps a mirror of a namespace's vectors in
memory (`VectorIndex`) and pulls only what changed since its last pull (a per-namespace change log),
then fetches the payloads of the best hits.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from redis import exceptions as rex
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.crc import key_slot

from tollgate.store import scripts
from tollgate.store.replicas import ReplicaCount, sentinel_listed
from tollgate.store.resp import RespClient
from tollgate.store import windows as _windows
from tollgate.store.base import (
    Counts,
    Mode,
    Reservation,
    Settlement,
    _as_int,
    _locate,
    Store,
    StoreError,
    StoreUnavailable,
    VectorHit,
    as_bytes,
    incr_amount,
    ttl_ms,
)
from tollgate.store.vectors import VectorIndex, normalize

T = TypeVar("T")

# Replies that mean "the server cannot serve now", whatever exception class the client picked.
_BUSY_REPLIES = ("LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS", "READONLY", "OOM")


@dataclass
class _Gathering:
    """The settlements of one event-loop turn, sent in one script by the caller that came first."""

    settlements: list[Settlement]
    waiters: list[asyncio.Future[None]] = field(default_factory=list)  # the callers that joined


@dataclass
class _Mirror:
    """This node's copy of a vector namespace, and how far into its change log it has read."""

    index: VectorIndex = field(default_factory=VectorIndex)
    epoch: str = ""
    seq: int = 0
    pulling: asyncio.Future[None] | None = None


class RedisStore(Store):
    """State in Redis, shared by every node that points at the same server, Sentinel set or Cluster.

    Build it with `RedisStore.from_url` (or `tollgate.store.create_store`). ``timeout`` bounds every
    operation end to end (queueing, connection, retries, reply); at most ``max_in_flight``
    operations run at once, the others queue within their deadline.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "tollgate:",
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
        max_in_flight: int = 16,
        sweep_limit: int = 100,
        sync_batch: int = 1000,
        closers: Iterable[Callable[[], Awaitable[Any]]] = (),
        description: str = "redis",
        scripts_client: RespClient | None = None,
        wait_replicas: int | None = 0,
        wait_timeout: float = 0.25,
        sentinel_replicas: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain braces (they would become the hash tag)")
        self._client = client
        self._prefix = prefix
        self._timeout = timeout
        self._clock = clock
        self._slots = asyncio.Semaphore(max_in_flight)
        self._cold_cluster = isinstance(client, RedisCluster)
        self._warm_lock = asyncio.Lock()
        self._sweep_limit = sweep_limit
        self._sync_batch = sync_batch
        self._closers = list(closers)
        self._description = description
        self._mirrors: dict[str, _Mirror] = {}
        self._gathering: _Gathering | None = None
        # Scripts (every window and counter operation) go over a pipelined connection when the server is a plain
        # one (see tollgate.store.resp); everything else, and Sentinel and Cluster, through redis-py.
        self._scripts_client = scripts_client
        # WAIT after each write: for a fixed number of replicas, or (None) for every replica the master has
        self._wait_replicas = wait_replicas
        self._replicas = (ReplicaCount(client.connection_pool, sentinel_replicas)  # type: ignore[union-attr]
                          if wait_replicas is None else None)
        self._wait_ms = max(1, math.ceil(wait_timeout * 1000))
        self._ledger_stem = secrets.token_hex(6) + "-"  # reservation records: this store's, numbered
        self._ledger_numbers = itertools.count()
        register = client.register_script
        self._windows = register(scripts.WINDOWS)
        self._settlements = register(scripts.SETTLE)
        self._reserve_in_turn = register(scripts.RESERVE_IN_TURN)
        self._incr = register(scripts.INCR)
        self._hset = register(scripts.HSET)
        self._vector_put = register(scripts.VECTOR_PUT)
        self._vector_delete = register(scripts.VECTOR_DELETE)
        self._vector_sync = register(scripts.VECTOR_SYNC)
        self._mget = register(scripts.MGET)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tollgate:",
        timeout: float = 1.0,
        connect_timeout: float = 0.25,
        socket_timeout: float = 0.25,
        max_connections: int = 16,
        cluster: bool = False,
        service_name: str | None = None,
        sentinel_password: str | None = None,
        clock: Callable[[], float] = time.time,
        sweep_limit: int = 100,
        sync_batch: int = 1000,
        wait_replicas: int | str | None = None,
        **client_options: Any,
    ) -> RedisStore:
        """Connect (lazily) to the Redis that ``url`` names.

        - ``redis://[user:password@]host:port/db`` and ``rediss://`` (TLS): one server;
          ``cluster=True`` treats it as a Cluster entry point instead.
        - ``sentinel://[user:password@]host:port[,host:port...]/service[/db]``: the master Sentinel
          reports for ``service`` (or ``service_name=``); ``sentinel_password=`` (also a query
          parameter) authenticates to the Sentinels, the userinfo to Redis.
        - ``redis+cluster://[user:password@]host:port[,host:port...]`` and ``rediss+cluster://``.

        ``timeout`` bounds each operation end to end; ``connect_timeout``/``socket_timeout`` bound
        each connect and each reply. One failed connection is retried at once (a pooled connection
        may predate a restart); nothing else is retried, so a script never runs twice because a
        reply was slow. ``max_connections`` caps the operations in flight, hence the connections per
        server: Redis runs commands one at a time, so a few connections carry a node's load, and
        opening many at once on a busy event loop can outlast the connect timeout. Callers beyond
        it wait their turn within ``timeout``. ``sweep_limit`` bounds how many expired vector
        entries a put removes; ``sync_batch`` how many vectors a mirror pulls per round trip.
        ``wait_replicas`` (also a query parameter: ``?wait_replicas=0``) is how many replicas must hold a write
        before it counts (``WAIT``, within ``socket_timeout``): ``"all"``, the default behind Sentinel, waits for
        every replica the master has, so that a failover loses no reservation; ``0``, the default for a single
        server, waits for none; a number waits for that many. Cluster takes only 0 (a keyless ``WAIT`` cannot
        follow a script to its node).
        ``client_options`` go to redis-py as they are (e.g. ``ssl_ca_certs``).
        """
        scheme, _, _ = url.partition("://")
        scheme = scheme.lower()
        retry = Retry(NoBackoff(), 1, supported_errors=(rex.ConnectionError,))
        common: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
            "retry": retry,
            **client_options,
        }
        url, query_wait = _pop_query(url, "wait_replicas")
        wanted = wait_replicas if wait_replicas is not None else query_wait
        replicas = _wait_count(wanted, default=None if scheme == "sentinel" else 0)
        listed = None
        closers: list[Callable[[], Awaitable[Any]]] = []
        client: Redis | RedisCluster
        scripts_client: RespClient | None = None
        if scheme in ("redis+cluster", "rediss+cluster") or (cluster and scheme in ("redis", "rediss")):
            user, password, hosts, _, _ = _split_url(url, default_port=6379)
            if scheme.startswith("rediss"):
                common.setdefault("ssl", True)
            if replicas != 0:
                raise ValueError("wait_replicas is for a server or Sentinel, not a Cluster")
            client = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in hosts],
                username=user,
                password=password,
                **common,
            )
            description = f"redis cluster {_hosts_text(hosts)}"
        elif scheme == "sentinel":
            user, password, hosts, path, query = _split_url(url, default_port=26379)
            parts = [part for part in path.split("/") if part]
            service = service_name or (unquote(parts[0]) if parts else None)
            if not service:
                raise ValueError("sentinel:// URL needs a service name: sentinel://host:26379/mymaster")
            db = int(parts[1]) if len(parts) > 1 else 0
            sentinel_password = sentinel_password or query.get("sentinel_password")
            sentinel_kwargs = {k: v for k, v in common.items() if k != "ssl"}
            if sentinel_password:
                sentinel_kwargs["password"] = sentinel_password
            sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **common)
            client = sentinel.master_for(service, username=user, password=password, db=db)
            closers = [s.aclose for s in sentinel.sentinels]
            listed = sentinel_listed(sentinel.sentinels, service)
            description = f"redis sentinel {_hosts_text(hosts)} service {service}"
        elif scheme in ("redis", "rediss", "unix"):
            pool = BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=timeout, **common
            )
            client = Redis(connection_pool=pool)
            if not client_options and replicas == 0:
                scripts_client = RespClient.for_url(url, connect_timeout, socket_timeout)
            location = urlsplit(url)
            where = f"{location.hostname}:{location.port or 6379}" if location.hostname else location.path
            description = f"redis {where}"
        else:
            raise ValueError(f"not a Redis URL: {scheme}://...")
        return cls(
            client,
            prefix=prefix,
            timeout=timeout,
            clock=clock,
            max_in_flight=max_connections,
            sweep_limit=sweep_limit,
            sync_batch=sync_batch,
            closers=closers,
            description=description,
            scripts_client=scripts_client,
            wait_replicas=replicas,
            wait_timeout=0.8 * socket_timeout,  # WAIT gives up before the socket does
            sentinel_replicas=listed,
        )

    def __repr__(self) -> str:
        return f"RedisStore({self._description})"

    # -- plumbing ---------------------------------------------------------------------------------

    async def _run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis exchange under the deadline, turning every failure into a StoreError."""
        try:
            async with asyncio.timeout(self._timeout), self._slots:
                if self._cold_cluster:
                    await self._warm_up()
                return await operation()
        except StoreError:
            raise
        except rex.RedisError as exc:
            raise _translate(exc, self._description) from exc
        except rex.RedisClusterException as exc:  # not a RedisError: "cannot connect to the cluster"...
            raise StoreUnavailable(f"{self._description}: {exc}") from exc
        except TimeoutError as exc:
            raise StoreUnavailable(f"{self._description}: no answer within {self._timeout} s") from exc
        except OSError as exc:
            raise StoreUnavailable(f"{self._description}: {exc}") from exc
        except Exception as exc:  # the client's own bugs must not reach plugins as anything else
            raise StoreUnavailable(f"{self._description}: client error {exc!r}") from exc

    async def _script(self, script: Any, keys: list[str], args: list[Any], writes: bool = True) -> Any:
        """Run a registered script: over the pipelined connection when there is one, else through redis-py; when
        the store waits for replicas and the script ``writes``, with ``WAIT`` after it."""
        fast = self._scripts_client
        if writes and (self._replicas is not None or self._wait_replicas):
            return await self._run(lambda: self._replicated(script, keys, args))
        if fast is None:
            return await self._run(lambda: self._call_script(script, keys, args))
        try:
            if fast.bounded_within(self._timeout):  # its own deadlines end every wait in time: no timer needed
                return await fast.evalsha(script.sha, script.script, keys, args)
            async with asyncio.timeout(self._timeout):
                return await fast.evalsha(script.sha, script.script, keys, args)
        except rex.RedisError as exc:
            raise _translate(exc, self._description) from exc
        except TimeoutError as exc:
            raise StoreUnavailable(f"{self._description}: no answer within {self._timeout} s") from exc
        except OSError as exc:
            raise StoreUnavailable(f"{self._description}: {exc}") from exc
        except Exception as exc:  # the client's own bugs must not reach plugins as anything else
            raise StoreUnavailable(f"{self._description}: client error {exc!r}") from exc

    async def _call_script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """A script by its digest, sent whole where the server lacks it: the rule of `RespClient.evalsha` and
        `_evalsha_and_wait`. Not redis-py's own retry (SCRIPT LOAD, then EVALSHA again): on a Cluster right after a
        failover the promoted replica has no scripts (they are not replicated), and redis-py loaded them on the
        masters it still knew, so its second EVALSHA failed too. EVAL goes where the keys live."""
        client = self._client
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[union-attr]
        except rex.NoScriptError:
            return await client.eval(script.script, len(keys), *keys, *args)  # type: ignore[union-attr]

    async def _replicated(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """The script, then ``WAIT``, on one connection in one round trip: its writes are on every replica that
        counts, or the call fails (what it wrote may stay on this server: see `StoreUnavailable.doubtful`)."""
        pool = self._client.connection_pool  # type: ignore[union-attr]
        connection = await pool.get_connection()
        try:
            wanted = self._wait_replicas if self._replicas is None else await self._replicas.needed(connection)
            reply, confirmed = await _evalsha_and_wait(connection, script, keys, args, wanted or 0, self._wait_ms)
            if not wanted or (confirmed is not None and confirmed >= wanted):
                return reply
            # This server may no longer be the master (a Sentinel promoted its replica): drop the connection, so
            # that its next one asks Sentinel again, and learn the replicas again.
            await connection.disconnect()
            if self._replicas is not None:
                self._replicas.refresh(soon=True)
        finally:
            await pool.release(connection)
        if confirmed is None:
            raise StoreUnavailable(f"{self._description}: no answer to WAIT")
        raise StoreUnavailable(f"{self._description}: {confirmed} of {wanted} replicas confirmed "
                               f"the write within {self._wait_ms} ms")

    async def _warm_up(self) -> None:
        """Learn a Cluster's topology once, before concurrent commands.

        redis-py 8.1's asyncio RedisCluster, used concurrently while still uninitialised, can
        disconnect connections other commands are setting up (AttributeError on a None writer).
        """
        async with self._warm_lock:
            if self._cold_cluster:
                await self._client.initialize()  # type: ignore[union-attr]
                self._cold_cluster = False

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}{kind}:{key}"

    # -- windows ----------------------------------------------------------------------------------

    def _new_ledger(self, windows: Sequence[_windows.Window]) -> str:
        # the windows' hash tag, as their buckets carry it: the record lives in their slot
        return f"r:{_windows.hash_tagged(windows[0].key)}:{self._ledger_stem}{next(self._ledger_numbers):x}"

    async def _apply(
        self, windows: Sequence[_windows.Window], buckets: Sequence[_windows.Bucket], amount: int, mode: Mode,
        ledger: str | None = None,
    ) -> tuple[int | None, Counts]:
        keys: list[str] = []
        args: list[str] = [str(amount), mode]
        for window, bucket in zip(windows, buckets):
            keys += (self._prefix + bucket.current, self._prefix + bucket.previous)
            args += (str(window.limit), repr(bucket.weight), str(max(1, math.ceil(bucket.ttl * 1000))))
        if ledger is not None:
            keys.append(self._prefix + ledger)
        reply = await self._script(self._windows, keys, args, writes=mode != "peek")
        refused = int(reply[0])
        counts = [(int(reply[i]), int(reply[i + 1])) for i in range(1, len(reply), 2)]
        return (refused - 1 if refused else None), counts

    async def reserve_in_turn(self, requests: Sequence[tuple[Sequence[tuple[Sequence[_windows.Window], int]], float]]
                              ) -> list[list[Reservation]]:
        """One script (one round trip) for all of them; a Cluster does them one by one (their keys may live on
        different nodes)."""
        if self._cold_cluster or isinstance(self._client, RedisCluster):
            return await super().reserve_in_turn(requests)
        plan: list[list[tuple[Sequence[_windows.Window], int, list[_windows.Bucket], str | None]]] = []
        keys: list[str] = []
        args: list[str] = [str(len(requests))]
        for groups, now in requests:
            located = []
            args.append(str(len(groups)))
            for windows, amount in groups:
                amount = _as_int(amount, "amount")
                if amount < 0:
                    raise ValueError("reserve amount must be >= 0 (use charge or settle to give back)")
                buckets = _locate(windows, now) if windows else []
                ledger = self._new_ledger(windows) if windows else None
                located.append((windows, amount, buckets, ledger))
                args += (str(amount), str(len(windows)))
                for window, bucket in zip(windows, buckets):
                    keys += (self._prefix + bucket.current, self._prefix + bucket.previous)
                    args += (str(window.limit), repr(bucket.weight), str(max(1, math.ceil(bucket.ttl * 1000))))
                if ledger is not None:
                    keys.append(self._prefix + ledger)
            plan.append(located)
        try:
            reply = await self._script(self._reserve_in_turn, keys, args)
        except StoreUnavailable as exc:
            exc.doubtful += [self._admitted(buckets, amount, ledger)
                             for located in plan for _, amount, buckets, ledger in located if ledger is not None]
            raise
        return self._read_in_turn(plan, requests, reply)

    def _read_in_turn(self, plan: list[list[tuple[Sequence[_windows.Window], int, list[_windows.Bucket], str | None]]],
                      requests: Sequence[tuple[Any, float]], reply: Any) -> list[list[Reservation]]:
        """The reservations RESERVE_IN_TURN's reply stands for."""
        results: list[list[Reservation]] = []
        at = 0
        for located, (_, now) in zip(plan, requests):
            made: list[Reservation] = []
            results.append(made)
            for windows, amount, buckets, ledger in located:
                if at >= len(reply):
                    return results
                refused = int(reply[at])
                counts = [(int(reply[at + 1 + 2 * i]), int(reply[at + 2 + 2 * i])) for i in range(len(windows))]
                at += 1 + 2 * len(windows)
                if not windows:
                    made.append(Reservation(allowed=True, amount=amount, states=[]))
                    continue
                reservation = self._reservation(windows, buckets, amount, refused - 1 if refused else None, counts,
                                                now, ledger)
                made.append(reservation)
                if not reservation.allowed:
                    for earlier in made[:-1]:
                        earlier.settled = True  # given back by the script
                    return results
        return results

    async def _settle(self, settlements: Sequence[Settlement]) -> None:
        """One SETTLE script for the settlements, joined by those other callers start in this event-loop turn (the
        request's other limiting plugins, other requests ending): one command where there were as many as
        reservations. A Cluster gets one script per hash slot instead (each reservation's ledger shares its
        buckets' slot, so each call stays in one)."""
        if any(ledger is None for *_, ledger in settlements):  # every reservation made here that can be settled
            raise ValueError("a Redis reservation is settled through its ledger")   # has its record
        if self._cold_cluster or isinstance(self._client, RedisCluster):
            by_slot: dict[int, list[Settlement]] = {}
            for settlement in settlements:
                by_slot.setdefault(key_slot((self._prefix + settlement.ledger).encode()), []).append(settlement)
            for group in by_slot.values():
                await self._send_settlements(group)
            return
        gathering = self._gathering
        if gathering is not None:  # another caller sends this turn's settlements: join them
            joined = asyncio.get_running_loop().create_future()
            gathering.settlements += settlements
            gathering.waiters.append(joined)
            await joined
            return
        gathering = self._gathering = _Gathering(list(settlements))
        try:
            await asyncio.sleep(0)  # the callers that are ready in this turn join
            self._gathering = None
            await self._send_settlements(gathering.settlements)
        except BaseException as exc:
            if self._gathering is gathering:
                self._gathering = None
            failure = exc if isinstance(exc, StoreError) else StoreUnavailable(f"{self._description}: {exc!r}")
            for waiter in gathering.waiters:
                if not waiter.done():   # each its own error: they are raised in different tasks
                    waiter.set_exception(type(failure)(*failure.args))
            raise
        for waiter in gathering.waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _send_settlements(self, settlements: Sequence[Settlement]) -> None:
        prefix = self._prefix
        keys: list[str] = []
        args: list[str] = [str(len(settlements))]
        for buckets, _, actual, ledger in settlements:
            keys += [prefix + bucket for bucket, _ in buckets]
            keys.append(prefix + ledger)  # type: ignore[operator]
            args += (str(actual), str(len(buckets)))
            args += [str(max(1, math.ceil(ttl * 1000))) for _, ttl in buckets]
        # unconfirmed or cut: it may have landed; the caller retries, and a retry applies only what did not
        await self._script(self._settlements, keys, args)

    def _ticks(self) -> float:
        return time.monotonic()

    # -- small values -----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._run(lambda: self._client.get(self._key("k", key)))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        value, lifetime = as_bytes(value), ttl_ms(ttl)
        await self._run(lambda: self._client.set(self._key("k", key), value, px=lifetime))

    async def delete(self, key: str) -> bool:
        return bool(await self._run(lambda: self._client.delete(self._key("k", key))))

    async def incr(self, key: str, amount: int | float = 1, ttl: float | None = None) -> int | float:
        expiry = str(ttl_ms(ttl) or 0)
        step = incr_amount(amount)
        kind = "float" if isinstance(step, float) else "int"
        args = [repr(step) if kind == "float" else str(step), kind, expiry]
        reply = await self._script(self._incr, [self._key("k", key)], args)
        return float(reply) if kind == "float" else int(reply)

    async def hget(self, key: str, field: str) -> bytes | None:
        return await self._run(lambda: self._client.hget(self._key("h", key), field))

    async def hgetall(self, key: str) -> dict[str, bytes]:
        reply = await self._run(lambda: self._client.hgetall(self._key("h", key)))
        return {name.decode(): value for name, value in reply.items()}

    async def hset(self, key: str, mapping: Mapping[str, bytes], ttl: float | None = None) -> None:
        args: list[str | bytes] = [str(ttl_ms(ttl) or 0)]
        for name, value in mapping.items():
            args += (str(name), as_bytes(value, "hash value"))
        if len(args) > 1:
            await self._script(self._hset, [self._key("h", key)], args)

    async def hdel(self, key: str, fields: Sequence[str]) -> int:
        if not fields:
            return 0
        return int(await self._run(lambda: self._client.hdel(self._key("h", key), *fields)))

    # -- vectors ----------------------------------------------------------------------------------

    def _space(self, namespace: str) -> str:
        return f"{self._prefix}v:{_windows.hash_tagged(namespace)}:"

    def _space_keys(self, namespace: str) -> list[str]:
        base = self._space(namespace)
        return [base + "vec", base + "exp", base + "log", base + "seq", base + "epoch"]

    async def vector_put(
        self, namespace: str, entry_id: str, vector: np.ndarray, payload: bytes, ttl: float | None = None
    ) -> None:
        unit = normalize(vector)
        payload = as_bytes(payload, "payload")
        lifetime = ttl_ms(ttl)
        mirror = self._mirrors.get(namespace)
        if mirror is not None and len(mirror.index) and mirror.index.dim != unit.shape[0]:
            held = mirror.index.dim
            raise ValueError(f"vector has {unit.shape[0]} dimensions, namespace {namespace!r} holds {held}")
        now = self._clock()
        expires_at = math.inf if ttl is None else now + ttl
        keys = self._space_keys(namespace) + [self._space(namespace) + "p:" + entry_id]
        args = [
            entry_id,
            unit.tobytes(),
            "+inf" if lifetime is None else str(round(expires_at * 1000)),
            payload,
            str(lifetime or 0),
            str(round(now * 1000)),
            secrets.token_hex(8),
            str(self._sweep_limit),
        ]
        await self._script(self._vector_put, keys, args)
        if mirror is not None:  # see our own write at once; the next pull confirms it
            mirror.index.put(entry_id, unit, expires_at)

    async def vector_search(
        self, namespace: str, vector: np.ndarray, k: int = 1, min_score: float = -1.0
    ) -> list[VectorHit]:
        unit = normalize(vector)
        if k <= 0:
            return []
        mirror = await self._refresh(namespace)
        found = mirror.index.search(unit, k, min_score, self._clock())
        if not found:
            return []
        base = self._space(namespace)
        payload_keys = [base + "p:" + entry_id for entry_id, _, _ in found]
        payloads = await self._script(self._mget, payload_keys, [], writes=False)
        hits = []
        for (entry_id, score, _), payload in zip(found, payloads):
            if payload is None:  # expired or deleted since the last pull
                mirror.index.remove(entry_id)
            else:
                hits.append(VectorHit(entry_id, score, payload))
        return hits

    async def vector_delete(self, namespace: str, entry_id: str) -> None:
        base = self._space(namespace)
        keys = self._space_keys(namespace)[:4] + [base + "p:" + entry_id]
        await self._script(self._vector_delete, keys, [entry_id])
        mirror = self._mirrors.get(namespace)
        if mirror is not None:
            mirror.index.remove(entry_id)

    async def _refresh(self, namespace: str) -> _Mirror:
        """Bring the namespace's mirror up to date; concurrent searches share one pull."""
        mirror = self._mirrors.get(namespace)
        if mirror is None:
            mirror = self._mirrors[namespace] = _Mirror()
        pulling = mirror.pulling
        if pulling is None or pulling.done():
            pulling = mirror.pulling = asyncio.ensure_future(self._pull(namespace, mirror))
            pulling.add_done_callback(_retrieve)
        await asyncio.shield(pulling)
        return mirror

    async def _pull(self, namespace: str, mirror: _Mirror) -> None:
        """Read the namespace's change log from the mirror's position, a batch per round trip."""
        keys = self._space_keys(namespace)
        while True:
            args = [mirror.epoch, str(mirror.seq), str(self._sync_batch)]
            reply = await self._script(self._vector_sync, keys, args, writes=False)
            epoch, seq, ids, vectors, expiries, last = reply
            epoch = epoch.decode()
            index = mirror.index
            if epoch != mirror.epoch:  # first pull, or the namespace was wiped: start from scratch
                index.clear()
                mirror.epoch, mirror.seq = epoch, 0
            for raw_id, blob, expiry in zip(ids, vectors, expiries):
                entry_id = raw_id.decode()
                expires_at = float(expiry) / 1000
                if not blob or expires_at <= 0:
                    index.remove(entry_id)
                    continue
                unit = np.frombuffer(blob, dtype=np.float32)
                if len(index) and unit.shape[0] != index.dim:
                    continue  # another model's vector in this namespace: unsearchable here
                index.put(entry_id, unit, expires_at)
            if len(ids) < self._sync_batch:
                mirror.seq = max(mirror.seq, int(seq))
                return
            mirror.seq = int(last)

    # -- lifecycle --------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(lambda: self._client.ping())

    async def close(self) -> None:
        for mirror in self._mirrors.values():
            if mirror.pulling is not None:
                mirror.pulling.cancel()
        self._mirrors.clear()
        if self._replicas is not None:
            self._replicas.close()
        if self._scripts_client is not None:
            self._scripts_client.close()
        for close in [self._client.aclose, *self._closers]:
            try:
                await close()
            except Exception:  # closing a dead connection must not fail shutdown
                pass


async def _evalsha_and_wait(connection: Any, script: Any, keys: list[str], args: list[Any], wanted: int,
                            wait_ms: int) -> tuple[Any, int | None]:
    """A registered script on one redis-py connection (sent whole if the server lacks it) and, in the same write,
    ``WAIT`` for ``wanted`` replicas (none: no WAIT). Returns the script's reply and how many replicas confirmed
    (None when WAIT's answer did not come in time)."""
    for command, body in (("EVALSHA", script.sha), ("EVAL", script.script)):
        commands: list[tuple[Any, ...]] = [(command, body, len(keys), *keys, *args)]
        if wanted:
            commands.append(("WAIT", wanted, wait_ms))
        await connection.send_packed_command(connection.pack_commands(commands))
        try:
            reply = await connection.read_response()
        except rex.NoScriptError:
            if wanted and await connection.read_response(timeout=wait_ms / 1000 + 0.5) is None:  # the WAIT after it
                await connection.disconnect()
                raise rex.TimeoutError("no answer to WAIT")
            continue
        except rex.ResponseError:
            if wanted:
                await connection.disconnect()  # WAIT's answer is still on its way: the connection is not reusable
            raise
        if not wanted:
            return reply, None
        # WAIT may take its whole timeout: the socket timeout must not cut it short (redis-py answers None, and
        # drops the connection, when this one runs out)
        return reply, await connection.read_response(timeout=wait_ms / 1000 + 0.5)
    raise rex.NoScriptError("the server lost the script again")


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a shared pull's failure as seen even if every waiter went away."""
    if not future.cancelled():
        future.exception()


def _translate(exc: rex.RedisError, where: str) -> StoreError:
    """Redis's exception classes, mapped to the store's two."""
    # AskError covers MovedError: a slot changing hands (redis-py follows redirections, and gives up after a few)
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, rex.ClusterError, rex.TryAgainError, rex.AskError)):
        return StoreUnavailable(f"{where}: {exc}")
    if isinstance(exc, rex.ResponseError) and str(exc).lstrip().upper().startswith(_BUSY_REPLIES):
        return StoreUnavailable(f"{where}: {exc}")
    if isinstance(exc, (rex.ReadOnlyError, rex.OutOfMemoryError)):
        return StoreUnavailable(f"{where}: {exc}")
    return StoreError(f"{where}: {exc}")


def _wait_count(value: int | str | None, default: int | None) -> int | None:
    """``wait_replicas`` as given (a number, ``"all"``, or nothing: ``default``): a count, or None for every
    replica."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().lower() == "all":
        return None
    count = int(value)
    if count < 0:
        raise ValueError("wait_replicas must be 'all' or a number >= 0")
    return count


def _split_url(
    url: str, default_port: int
) -> tuple[str | None, str | None, list[tuple[str, int]], str, dict[str, str]]:
    """user, password, [(host, port)...], path, query of a URL whose host part may list several hosts."""
    rest = url.partition("://")[2]
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    user = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    hosts = [_host_port(item, default_port) for item in hostlist.split(",") if item]
    if not hosts:
        raise ValueError("Redis URL names no host")
    params = {name: values[-1] for name, values in parse_qs(query).items()}
    return user, password, hosts, slash + path, params


def _pop_query(url: str, name: str) -> tuple[str, str | None]:
    """``url`` without the query parameter ``name``, and its (last) value."""
    base, mark, query = url.partition("?")
    if not mark:
        return url, None
    kept, value = [], None
    for part in query.split("&"):
        key, _, raw = part.partition("=")
        if unquote(key) == name:
            value = unquote(raw)
        elif part:
            kept.append(part)
    return (base + "?" + "&".join(kept) if kept else base), value


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [ipv6]:port
        host, _, port = item[1:].partition("]")
        return host, int(port.lstrip(":") or default_port)
    host, colon, port = item.rpartition(":")
    if not colon:
        return item, default_port
    return host, int(port)


def _hosts_text(hosts: Sequence[tuple[str, int]]) -> str:
    return ",".join(f"{host}:{port}" for host, port in hosts)
