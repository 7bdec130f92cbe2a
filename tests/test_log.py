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
