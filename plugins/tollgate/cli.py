"""``tollgate``: run the process (``serve``), describe the plugins to Kong (``dump``), list budget spend (``spend``),
purge the semantic cache (``cache purge``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import orjson

from . import log
from .settings import Settings


def _dump(args: argparse.Namespace) -> int:
    # Kong parses this command's stdout as JSON: whatever a plugin module prints on import goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        from .pluginserver import loader

        plugins = loader.load_all(args.plugins_dir)
    if args.plugin:
        if args.plugin not in plugins:
            print(f"tollgate: no plugin named {args.plugin}", file=sys.stderr)
            return 2
        chosen = [plugins[args.plugin]]
    else:
        chosen = list(plugins.values())
    document = {"Protocol": "MsgPack:1", "Plugins": [p.info() for p in chosen]}
    sys.stdout.write(orjson.dumps(document).decode() + "\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = Settings()
    for name in ("socket_dir", "plugins_dir", "relay_host", "relay_port", "status_host", "status_port", "redis_url",
                 "log_level"):
        value = getattr(args, name)
        if value is not None:
            setattr(settings, name, value)
    log.setup(settings.log_level)
    with contextlib.redirect_stdout(sys.stderr):
        from .process import run

        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(run(settings))
    return 0


def _instant(text: str | None) -> float | None:
    """``--at``: epoch seconds or an ISO 8601 timestamp (UTC when it names no offset)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    import datetime as dt

    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _spend(args: argparse.Namespace) -> int:
    """Budget spend per scope and period: from Redis directly, or from a running process's status listener."""
    import json
    import time
    import urllib.error
    import urllib.parse
    import urllib.request

    from .plugins.cost_quota.spend import format_table, report_stores

    try:
        at = _instant(args.at)
    except ValueError:
        print(f"tollgate spend: --at {args.at!r} is neither epoch seconds nor an ISO 8601 time", file=sys.stderr)
        return 2
    if args.redis_url:
        from .store import create_store

        async def read() -> list:
            store = create_store(args.redis_url, timeout=args.timeout, connect_timeout=args.timeout,
                                 socket_timeout=args.timeout)
            try:
                return await report_stores([(repr(store), store)], at if at is not None else time.time(),
                                           args.namespace)
            finally:
                await store.close()

        rows = asyncio.run(read())
    else:
        settings = Settings()
        url = args.status_url or f"http://{settings.status_host}:{settings.status_port}"
        query = {k: v for k, v in (("at", at), ("namespace", args.namespace)) if v is not None}
        target = url.rstrip("/") + "/spend" + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            with urllib.request.urlopen(target, timeout=args.timeout) as answer:
                rows = json.loads(answer.read())["rows"]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            print(f"tollgate spend: cannot read {target}: {exc}\n(is `tollgate serve` running with that status "
                  "listener? for strategy redis, --redis-url reads Redis directly)", file=sys.stderr)
            return 1
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_table(rows) + "\n")
    return 1 if any("error" in row for row in rows) else 0


def _cache_purge(args: argparse.Namespace) -> int:
    """Purge tollgate-semantic-cache entries: in Redis or pgvector directly, or through a running process (which
    reaches its local cache and every store it uses)."""
    import json
    import time
    import urllib.error
    import urllib.parse
    import urllib.request

    if args.route and args.consumer:
        print("tollgate cache purge: give --route or --consumer, not both", file=sys.stderr)
        return 2
    what = args.route or args.consumer or "everything"
    if args.redis_url or args.pgvector_uri:
        from .plugins.semantic_cache.vectordb import StoreVectorDB
        from .store import StoreError, create_store

        async def purge() -> None:
            at = time.time()
            if args.redis_url:
                store = create_store(args.redis_url, timeout=args.timeout, connect_timeout=args.timeout,
                                     socket_timeout=args.timeout)
                try:
                    await StoreVectorDB(store, "redis").purge(at, args.route, args.consumer)
                finally:
                    await store.close()
            if args.pgvector_uri:
                from .plugins.semantic_cache.pgvector import PgVectorDB

                for dimensions in args.dimensions:
                    await PgVectorDB(args.pgvector_uri, args.table, dimensions, args.timeout).purge(
                        at, args.route, args.consumer)

        try:
            asyncio.run(purge())
        except (StoreError, OSError) as exc:
            print(f"tollgate cache purge: {exc}", file=sys.stderr)
            return 1
        print(f"purged {what}")
        return 0
    settings = Settings()
    url = args.status_url or f"http://{settings.status_host}:{settings.status_port}"
    query = {k: v for k, v in (("route", args.route), ("consumer", args.consumer)) if v}
    target = url.rstrip("/") + "/cache" + ("?" + urllib.parse.urlencode(query) if query else "")
    try:
        with urllib.request.urlopen(urllib.request.Request(target, method="DELETE"), timeout=args.timeout) as answer:
            json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"tollgate cache purge: cannot reach {target}: {exc}", file=sys.stderr)
        return 1
    print(f"purged {what}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tollgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    dump = commands.add_parser("dump", help="print plugin info for Kong's pluginserver query command")
    dump.add_argument("--plugin", help="only this plugin (one plugin-server entry per plugin, Kong 3.9+)")
    dump.add_argument("--plugins-dir", help="also load kong-pdk style plugin modules from this directory")
    dump.set_defaults(run=_dump)

    serve = commands.add_parser("serve", help="run the plugin server and the relay")
    serve.add_argument("--socket-dir")
    serve.add_argument("--plugins-dir")
    serve.add_argument("--relay-host")
    serve.add_argument("--relay-port", type=int)
    serve.add_argument("--status-host")
    serve.add_argument("--status-port", type=int, help="metrics (/metrics) and health (/health) listener")
    serve.add_argument("--redis-url")
    serve.add_argument("--log-level")
    serve.set_defaults(run=_serve)

    spend = commands.add_parser("spend", help="list tollgate-cost-quota spend per budget, scope and period")
    spend.add_argument("--redis-url", help="read the budgets of strategy redis from this Redis directly")
    spend.add_argument("--status-url", help="a running process's status listener (default: "
                                            "TOLLGATE_STATUS_HOST/PORT); it reports every store it uses, local included")
    spend.add_argument("--namespace", help="only this namespace (a plugin instance's id unless configured)")
    spend.add_argument("--at", help="report the periods containing this instant (epoch seconds or ISO 8601; "
                                    "default: now)")
    spend.add_argument("--json", action="store_true", help="one JSON row per budget and scope (micro-units too)")
    spend.add_argument("--timeout", type=float, default=5.0)
    spend.set_defaults(run=_spend)

    cache = commands.add_parser("cache", help="manage tollgate-semantic-cache entries")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    purge = cache_commands.add_parser("purge", help="never serve the matching entries again (they expire by TTL)")
    purge.add_argument("--route", help="only entries made on this route (its id)")
    purge.add_argument("--consumer", help="only entries made for this consumer (its id, username or custom id)")
    purge.add_argument("--status-url", help="a running process's status listener (default: TOLLGATE_STATUS_HOST/"
                                            "PORT); it purges its local cache and every store it uses")
    purge.add_argument("--redis-url", help="purge vectordb strategy redis in this Redis directly")
    purge.add_argument("--pgvector-uri", help="purge vectordb strategy pgvector in this database directly")
    purge.add_argument("--table", default="tollgate_semantic_cache", help="vectordb.pgvector.table")
    purge.add_argument("--dimensions", type=int, action="append", default=None,
                       help="vectordb.dimensions of the tables to purge (repeatable; default 384)")
    purge.add_argument("--timeout", type=float, default=5.0)
    purge.set_defaults(run=_cache_purge)

    args = parser.parse_args(argv)
    if getattr(args, "cache_command", None) == "purge" and not args.dimensions:
        args.dimensions = [384]
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
