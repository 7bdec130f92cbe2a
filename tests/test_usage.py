"""The usage record: minute buckets, retention, the row cap, percentiles, and the outcome read from ctx.meta."""

from __future__ import annotations

import pytest

from tollgate.usage import EDGES, OTHER, Key, UsageRecord, observe, outcome_of, percentile

T0 = 1_767_225_600.0  # a minute boundary


def key(consumer: str = "alice", outcome: str = "ok") -> Key:
    return Key("route-1", consumer, "openai", "gpt-4o-mini", "", outcome)


def test_rows_of_the_same_key_and_minute_add_up_and_ranges_select_minutes():
    record = UsageRecord()
    for offset in (0, 10, 59):
        record.row(T0 + offset, key()).requests += 1
    record.row(T0 + 60, key()).requests += 5
    record.row(T0 + 120, key("bob")).requests += 7
    assert [(start, k.consumer, r.requests) for start, k, r in record.rows(T0, T0 + 180)] == [
        (T0, "alice", 3), (T0 + 60, "alice", 5), (T0 + 120, "bob", 7)]
    # A range covers every minute it overlaps, and no other.
    assert [r.requests for _, _, r in record.rows(T0 + 61, T0 + 119)] == [5]
    assert list(record.rows(T0 + 180, T0 + 600)) == []


def test_minutes_older_than_the_retention_are_dropped_when_a_new_minute_starts():
    record = UsageRecord(retention_seconds=300)
    record.row(T0, key()).requests += 1
    record.row(T0 + 240, key()).requests += 1
    assert len(list(record.rows(T0, T0 + 600))) == 2
    record.row(T0 + 360, key()).requests += 1       # T0's minute is now more than 300 s old
    assert [start for start, _, _ in record.rows(T0, T0 + 600)] == [T0 + 240, T0 + 360]
    record.row(T0 + 30, key()).requests += 1        # a late request for an old minute does not resurrect others
    assert len(list(record.rows(0, T0 + 600))) == 3


def test_a_minute_holds_at_most_max_rows_keys_and_folds_the_rest_into_other():
    record = UsageRecord(max_rows=3)
    for i in range(10):
        record.row(T0, key(f"c{i}")).requests += 1
    consumers = {k.consumer: r.requests for _, k, r in record.rows(T0, T0 + 60)}
    assert consumers == {"c0": 1, "c1": 1, "c2": 1, OTHER: 7}
    assert sum(consumers.values()) == 10


def test_percentiles_are_within_a_bucket_of_the_truth():
    histogram = None
    values = [float(v) for v in range(1, 1001)]     # 1..1000 ms
    for v in values:
        histogram = observe(histogram, v)
    for q, truth in ((0.5, 500.0), (0.95, 950.0), (0.99, 990.0)):
        got = percentile(histogram, q)
        assert truth / 1.25 <= got <= truth * 1.25, (q, got)
    assert percentile(None, 0.5) is None
    # Beyond the last edge: still counted, reported as the last edge.
    assert percentile(observe(None, 10 ** 9), 0.5) == EDGES[-1]


@pytest.mark.parametrize("status, meta, outcome", [
    (200, {}, "ok"),
    (429, {"refusal": ("tollgate-token-limit", "tokens")}, "refused:tollgate-token-limit:tokens"),
    (400, {"ai_log": {"guardrails": {"rule": "deny:secrets", "action": "block"}}}, "blocked:guardrails:deny:secrets"),
    (200, {"ai_log": {"guardrails": {"rule": "pii", "action": "redact"}}}, "ok"),
    (200, {"refused_by_filter": "response_blocked"}, "blocked:answer:response_blocked"),
    (502, {}, "error:502"),
    (0, {}, "error:0"),
])
def test_outcome_is_read_from_what_the_stages_left(status, meta, outcome):
    assert outcome_of(status, meta) == outcome
