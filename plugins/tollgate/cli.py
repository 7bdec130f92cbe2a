"""``tollgate``: run the process (``serve``) or describe the plugins to Kong (``dump``)."""

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

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
