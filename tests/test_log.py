"""tollgate.log: the JSON lines `event` writes, on its direct path and through the logging machinery alike."""

import io
import logging

import orjson
import pytest

from tollgate import log


@pytest.fixture
def stderr(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger("tollgate")
    saved = root.handlers[:], root.level, root.propagate, log._direct
    log.setup("info")
    yield stream
    root.handlers[:], root.level, root.propagate = saved[:3]
    log._direct = saved[3]


def lines(stream):
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_event_line_is_scrubbed_json(stderr):
    log.event(log.get("relay"), "called with Bearer abc.def-123", logging.WARNING, api_key="sk-live", tokens=12,
              nested={"authorization": "Basic dXNlcjpwYXNz", "model": "m"}, note=None)
    [entry] = lines(stderr)
    assert entry["level"] == "warning" and entry["logger"] == "tollgate.relay"
    assert entry["msg"] == "called with Bearer [redacted]"
    assert entry["api_key"] == "[redacted]" and entry["tokens"] == 12 and entry["note"] is None
    assert entry["nested"] == {"authorization": "[redacted]", "model": "m"}
    assert isinstance(entry["time"], float)


def test_below_the_level_nothing_is_written(stderr):
    log.event(log.get("relay"), "debug detail", logging.DEBUG, x=1)
    assert stderr.getvalue() == ""


def test_a_handler_added_later_sees_the_event_as_a_record(stderr):
    """The direct path is only taken while the logging tree is as setup left it: a filter or handler added later
    gets records, and the line written is the same."""
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger = log.get("analytics")
    logger.addHandler(handler)
    try:
        log.event(logger, "ai request", logging.INFO, status=200, password="hunter2")
    finally:
        logger.removeHandler(handler)
    log.event(logger, "ai request", logging.INFO, status=200, password="hunter2")
    assert len(seen) == 1 and seen[0].fields == {"status": 200, "password": "hunter2"}
    via_record, direct = lines(stderr)
    via_record.pop("time"), direct.pop("time")
    assert via_record == direct == {"level": "info", "logger": "tollgate.analytics", "msg": "ai request",
                                    "status": 200, "password": "[redacted]"}


def test_texts_are_redacted_exactly_as_by_both_patterns():
    """The pre-scan that lets secret-free text through untouched changes nothing: every text, with or without
    secret-shaped parts, comes out as the two substitutions would make it."""
    import random

    def both(text: str) -> str:
        return log._KEYLIKE.sub(log.REDACTED, log._BEARER.sub(r"\1 " + log.REDACTED, text))

    pieces = ["Bearer", "bearer", "BASIC", "basic", " ", "\t", "\n", "sk-", "pk_", "rk-", "AKIA", "ASIA", "abc",
              "0123456789", "XYZ_", "-", "=", ".", "é", "token", "key:", "Authorization:", "sk", "ASI",
              "BeArEr", "bAsIc", "ba", "ſic", "be", "arer", "\u212a"]   # mixed case; the long s and Kelvin sign fold
    rng = random.Random(7)
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert log._redact_text(text) == both(text), text
    assert log._redact_text("Authorization: Bearer abc.def") == "Authorization: Bearer [redacted]"
    assert log._redact_text("0f3c9a1b-77aa-4f1e-9d2c-5b6a7e8f9012") == "0f3c9a1b-77aa-4f1e-9d2c-5b6a7e8f9012"


def test_a_logger_below_another_takes_the_direct_path_until_its_parent_has_a_handler(stderr, monkeypatch):
    """"mcp.audit" sits below "mcp": its lines go straight to the handler too (no LogRecord), and a handler on the
    parent gets records again."""
    parent, child = log.get("mcp"), log.get("mcp.audit")
    records = []
    monkeypatch.setattr(child, "makeRecord", lambda *a, **k: records.append(a) or logging.Logger.makeRecord(
        child, *a, **k))
    log.event(child, "tools/call", logging.INFO, name="echo")
    assert records == []
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    parent.addHandler(handler)
    try:
        log.event(child, "tools/call", logging.INFO, name="echo")
    finally:
        parent.removeHandler(handler)
    assert len(records) == 1 and len(seen) == 1
    direct, via_record = lines(stderr)
    direct.pop("time"), via_record.pop("time")
    assert direct == via_record == {"level": "info", "logger": "tollgate.mcp.audit", "msg": "tools/call",
                                    "name": "echo"}
