"""``tollgate``: run the process (``serve``), describe the plugins to Kong (``dump``), check the plugin configs of decK
files (``validate``), list budget spend (``spend``) and usage (``usage``), purge the semantic cache (``cache purge``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
from typing import Any

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


def _validate(args: argparse.Namespace) -> int:
    if args.plugins_dir and not os.path.isdir(args.plugins_dir):
        print(f"tollgate validate: the plugins directory {args.plugins_dir} does not exist", file=sys.stderr)
        return 2
    with contextlib.redirect_stdout(sys.stderr):
        from . import deckcheck
        from .pluginserver import loader

        plugins = loader.load_all(args.plugins_dir)
    failed = False
    for path in args.files:
        try:
            checked, problems = deckcheck.check_file(path, plugins)
        except deckcheck.DeckFileError as exc:
            print(f"tollgate validate: {exc}", file=sys.stderr)
            failed = True
            continue
        for problem in problems:
            print(problem, file=sys.stderr)
        failed = failed or bool(problems)
        verdict = f"{len(problems)} error{'s' if len(problems) != 1 else ''}" if problems else "valid"
        print(f"{path}: {checked} Tollgate plugin config{'s' if checked != 1 else ''}, {verdict}")
    return 1 if failed else 0


# `tollgate serve`'s flags: one per process setting (settings.Settings), each with its TOLLGATE_* variable.
SERVE_HELP = {
    "socket_dir": "directory of the plugin sockets Kong dials (it must exist)",
    "plugins_dir": "also serve kong-pdk style plugin modules from this directory",
    "relay_host": "address of the relay, the HTTP listener Tollgate routes' Services point at",
    "relay_port": "port of the relay",
    "status_host": "address of the status listener (/metrics, /health, /spend)",
    "status_port": "port of the status listener",
    "redis_url": "Redis for plugins with strategy redis that name none themselves",
    "log_level": "debug, info, warning or error (JSON lines on stderr)",
    "sync_handler_threads": "threads running synchronous (kong-pdk style) handlers",
    "event_timeout": "seconds after which an event Kong stopped answering is dropped",
    "socket_message_timeout": "seconds a plugin-socket peer has to finish sending a message it started",
    "socket_backlog_bytes": "bytes all plugin-socket connections together may hold for messages not yet complete",
    "attachment_ttl": "seconds an attachment waits for its request to reach the relay",
    "socket_mode": "permissions of the plugin sockets, in octal (who may connect can act as Kong)",
    "socket_group": "group of the plugin sockets (name or id; default: the process's): Kong's nginx workers' group",
    "usage_retention": "seconds of per-minute usage kept for the dashboard and `tollgate usage`",
}
# Secrets are read from the environment only: a flag would show them in `ps`.
ENV_ONLY = frozenset({"status_token"})


def _octal(text: str) -> int:
    return int(text, 8)


def _env_default(item: dataclasses.Field) -> object:
    """A setting's value without its flag: its TOLLGATE_* variable, else the built-in default."""
    try:
        return item.default_factory()  # type: ignore[misc]
    except ValueError:
        raise ValueError(f"TOLLGATE_{item.name.upper()}={os.environ.get('TOLLGATE_' + item.name.upper())!r} is not "
                         f"a valid {item.name.replace('_', ' ')}") from None


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    for item in dataclasses.fields(Settings):
        name = item.name
        if name in ENV_ONLY:
            continue
        kind: object = {"int": int, "float": float}.get(str(item.type), str)
        try:
            value = _env_default(item)
            shown = "none" if value is None else f"{value:04o}" if name == "socket_mode" else value
        except ValueError as exc:
            shown = f"invalid: {exc}"
        if name == "socket_mode":
            kind = _octal
        what = SERVE_HELP.get(name, name.replace("_", " "))
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, metavar=name.split("_")[-1].upper(),
                            help=f"{what} [env TOLLGATE_{name.upper()}; default: {shown}]")


def _serve(args: argparse.Namespace) -> int:
    values = {}
    for item in dataclasses.fields(Settings):
        flag = getattr(args, item.name, None)
        try:
            values[item.name] = flag if flag is not None else _env_default(item)
        except ValueError as exc:
            print(f"tollgate serve: {exc}", file=sys.stderr)
            return 2
    settings = Settings(**values)
    log.setup(settings.log_level)
    with contextlib.redirect_stdout(sys.stderr):
        from .process import StartupError, run

        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        try:
            asyncio.run(run(settings))
        except StartupError as exc:
            print(f"tollgate serve: {exc}", file=sys.stderr)
            return 1
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


def _status_get(command: str, path: str, query: dict[str, Any], args: argparse.Namespace,
                method: str = "GET") -> Any:
    """Ask a running process's status listener (with TOLLGATE_STATUS_TOKEN as the bearer, when set); None and a
    message on stderr when it cannot be read."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    settings = Settings()
    url = args.status_url or f"http://{settings.status_host}:{settings.status_port}"
    target = url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    headers = {"Authorization": f"Bearer {settings.status_token}"} if settings.status_token else {}
    try:
        request = urllib.request.Request(target, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=args.timeout) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error") or exc.reason
        except ValueError:
            detail = exc.reason
        print(f"tollgate {command}: {target} answered {exc.code}: {detail}", file=sys.stderr)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"tollgate {command}: cannot read {target}: {exc}\n(is `tollgate serve` running with that status "
              "listener?)", file=sys.stderr)
    return None


def _usage(args: argparse.Namespace) -> int:
    """Tokens and cost per period, consumer and model (or the dimensions of --by), from a running process."""
    from .dashboard.report import format_usage

    query = {"range": args.range, "period": args.period, "by": args.by, "limit": args.limit}
    answer = _status_get("usage", "/usage", {k: v for k, v in query.items() if v is not None}, args)
    if answer is None:
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(answer["rows"], option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_usage(answer["rows"], answer["by"]) + "\n")
    return 0


def _spend(args: argparse.Namespace) -> int:
    """Budget spend per scope and period: from Redis directly, or from a running process's status listener."""
    import time

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
        query = {k: v for k, v in (("at", at), ("namespace", args.namespace)) if v is not None}
        answer = _status_get("spend", "/spend", query, args)
        if answer is None:
            return 1
        rows = answer["rows"]
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_table(rows) + "\n")
    return 1 if any("error" in row for row in rows) else 0


def _cache_purge(args: argparse.Namespace) -> int:
    """Purge tollgate-semantic-cache entries: in Redis or pgvector directly, or through a running process (which
    reaches its local cache and every store it uses)."""
    import time

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
    query = {k: v for k, v in (("route", args.route), ("consumer", args.consumer)) if v}
    if _status_get("cache purge", "/cache", query, args, method="DELETE") is None:
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

    validate = commands.add_parser(
        "validate", help="check every Tollgate plugin config in decK files against the plugins' schemas",
        description="Check every Tollgate plugin config in decK files (YAML or JSON) as Kong and the plugin server "
                    "will: schema (types, allowed values, required and unknown fields) and the plugin's own checks. "
                    "One line per error, with file and path; exit status 1 if any.")
    validate.add_argument("files", nargs="+", metavar="FILE", help="decK files")
    validate.add_argument("--plugins-dir", help="also load kong-pdk style plugin modules from this directory")
    validate.set_defaults(run=_validate)

    serve = commands.add_parser(
        "serve", help="run the plugin server and the relay",
        description="Run the Tollgate process: the plugin server on its unix sockets and the relay. Every flag "
                    "falls back to its TOLLGATE_* environment variable, then to the default shown.")
    _add_serve_flags(serve)
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

    usage = commands.add_parser("usage", help="tokens and cost per consumer, model and period, from a running "
                                              "process's status listener (TOLLGATE_STATUS_TOKEN is sent when set)")
    usage.add_argument("--status-url", help="the process's status listener (default: TOLLGATE_STATUS_HOST/PORT)")
    usage.add_argument("--range", help="how far back: 5m, 15m, 1h, 6h or 24h (default 24h)")
    usage.add_argument("--period", help="one row per minute, hour (default) or day")
    usage.add_argument("--by", help="comma-separated dimensions among route, consumer, provider, model "
                                    "(default: consumer,model)")
    usage.add_argument("--limit", type=int, help="at most this many rows (default 1000)")
    usage.add_argument("--json", action="store_true", help="JSON rows instead of a table")
    usage.add_argument("--timeout", type=float, default=5.0)
    usage.set_defaults(run=_usage)

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
