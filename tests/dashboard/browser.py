"""Headless Chromium for the dashboard tests (Debian's ``chromium``; no driver): the DOM after the page's scripts
ran, a screenshot, and a reader of the figures the page writes (``data-kpi``, ``data-key``, ``data-field``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from html.parser import HTMLParser
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("TOLLGATE_CHROMIUM")
    if explicit:
        return explicit if os.path.exists(explicit) else None
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


async def _run(binary: str, *args: str, timeout: float = 60.0) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tollgate-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"chromium exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
        return out


async def dump_dom(binary: str, url: str, wait_ms: int = 5000) -> str:
    """The DOM once the page's scripts had ``wait_ms`` of (virtual) time: fetches finish inside it."""
    return (await _run(binary, f"--virtual-time-budget={wait_ms}", "--dump-dom", url)).decode()


async def screenshot(binary: str, url: str, path: str, size: str = "1400,2200", wait_ms: int = 5000) -> None:
    await _run(binary, f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", f"--window-size={size}",
               "--hide-scrollbars", url)


class Figures(HTMLParser):
    """What the page shows: ``state`` (body's data-state), ``kpis`` {field: raw value}, ``tables`` {table id:
    {row key: {field: raw value}}}, ``texts`` {table id: [row texts]} (empty-state messages included)."""

    def __init__(self, html: str):
        super().__init__()
        self.state: str | None = None
        self.loads = 0          # how many times the page has fetched and drawn its data
        self.kpis: dict[str, str] = {}
        self.tables: dict[str, dict[str, dict[str, str]]] = {}
        self.texts: dict[str, list[str]] = {}
        self._table: str | None = None
        self._row: str | None = None
        self._text: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.state = a.get("data-state")
            self.loads = int(a.get("data-loads") or 0)
        elif tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables.setdefault(self._table, {})
            self.texts.setdefault(self._table, [])
        elif tag == "tr" and self._table:
            self._row = a.get("data-key")
            self._text = []
            if self._row is not None:
                self.tables[self._table][self._row] = {}
        elif tag == "td" and self._table and self._row is not None and "data-field" in a:
            self.tables[self._table][self._row][a["data-field"]] = a.get("data-value", "")
        if "data-kpi" in a:
            self.kpis[a["data-kpi"]] = a.get("data-value", "")

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._table and self._text is not None:
            self.texts[self._table].append(" ".join(t.strip() for t in self._text if t.strip()))
            self._text = None
            self._row = None
        elif tag == "table":
            self._table = None

    def row(self, table: str, key: str) -> dict[str, Any]:
        found = self.tables.get(table, {}).get(key)
        assert found is not None, (table, key, self.tables.get(table))
        return found
