"""The dashboard's routes on the status listener: the page, its static files, and the JSON it reads.

The page and its files hold no data, so they are served to anyone who reaches the listener; the data
(``/dashboard/data``, ``/usage``, and ``/metrics`` and ``/spend`` beside them) needs ``Authorization: Bearer``
with the status token when one is configured (the page takes it from its URL's fragment, ``#token=...``,
which browsers never send to the server).
"""

from __future__ import annotations

import hmac
from importlib import resources
from typing import Any, Awaitable, Callable

from aiohttp import web

from .. import runtime as runtime_module, usage
from ..store import from_each
from . import report

STATIC = {"index.html": "text/html", "dashboard.js": "application/javascript", "dashboard.css": "text/css"}
OPEN_PATHS = frozenset({"/health", "/dashboard", "/dashboard/"})
MAX_USAGE_ROWS = 10_000


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def token_middleware(token: str | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refuse data requests without the bearer ``token`` (no check at all when there is none)."""
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if expected is None or request.path in OPEN_PATHS or request.path.startswith("/dashboard/static/"):
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "this status listener needs Authorization: Bearer <status token>"},
                                     status=401, headers={"WWW-Authenticate": 'Bearer realm="tollgate"'})
        return await handler(request)

    return check


def _bad(exc: report.BadQuery) -> web.Response:
    return web.json_response({"error": str(exc)}, status=400)


async def page(_: web.Request) -> web.Response:
    return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=_static(name), content_type=STATIC[name], charset="utf-8")


async def data(request: web.Request) -> web.Response:
    """The page's figures for ``range`` (5m ... 24h), ``top`` rows per breakdown, and from every store the budgets
    and the ``top`` fullest token-limit windows (cluster-wide with ``strategy: redis``)."""
    from ..plugins.cost_quota.spend import report_stores
    from ..plugins.token_limit import index as token_windows

    try:
        range_name, seconds = report.parse_range(request.query.get("range"))
        top = report.parse_int(request.query.get("top"), "top", 10, report.MAX_TOP)
    except report.BadQuery as exc:
        return _bad(exc)
    runtime = runtime_module.current()
    now = runtime.clock()
    document = report.dashboard(usage.RECORD, now, range_name, seconds, top)
    stores = [("local" if key == "local" else repr(store), store) for key, store in list(runtime.stores.items())]
    document["budgets"] = await report_stores(stores, now)
    windows = await from_each(stores, lambda store: token_windows.report(store, now))
    fullest = sorted((row for row in windows if "error" not in row), key=lambda r: -r["used"] / r["limit"])
    document["token_limits"] = [row for row in windows if "error" in row] + fullest[:top]
    return web.json_response(document, dumps=_dumps)


async def usage_report(request: web.Request) -> web.Response:
    """``tollgate usage``: tokens and cost per ``period`` and the ``by`` dimensions over ``range``."""
    try:
        _, seconds = report.parse_range(request.query.get("range") or "24h")
        period_name = request.query.get("period") or "hour"
        if period_name not in report.PERIODS:
            raise report.BadQuery(f"unknown period {period_name!r}; one of {', '.join(report.PERIODS)}")
        by = report.parse_dimensions(request.query.get("by"), ("consumer", "model"))
        limit = report.parse_int(request.query.get("limit"), "limit", 1000, MAX_USAGE_ROWS)
    except report.BadQuery as exc:
        return _bad(exc)
    now = runtime_module.current().clock()
    rows = report.usage_rows(usage.RECORD, now, seconds, report.PERIODS[period_name], by, limit)
    return web.json_response({"until": now, "period": period_name, "by": list(by), "rows": rows}, dumps=_dumps)


def _dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/", page)
    app.router.add_get("/dashboard/static/{name}", static)
    app.router.add_get("/dashboard/data", data)
    app.router.add_get("/usage", usage_report)
