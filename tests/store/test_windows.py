"""The window arithmetic both backends share (no store involved)."""

from __future__ import annotations

import pytest

from tollgate.store import Window
from tollgate.store import windows as w


def test_fixed_buckets_align_to_multiples_of_size() -> None:
    window = Window("k", 10, 60, sliding=False)
    before = w.locate(window, 119.999)
    at = w.locate(window, 120.0)
    assert (before.start, before.reset_at) == (60.0, 120.0)
    assert (at.start, at.reset_at) == (120.0, 180.0)
    assert before.current != at.current
    assert at.previous == at.current and at.weight == 0.0


def test_explicit_start_anchors_the_buckets() -> None:
    window = Window("k", 10, 100, sliding=False, start=1000.5)
    assert w.locate(window, 1000.5).start == 1000.5
    assert w.locate(window, 1100.4).start == 1000.5
    assert w.locate(window, 1100.5).start == 1100.5
    assert w.locate(window, 1100.5).reset_at == 1200.5


def test_sliding_weight_falls_across_the_bucket() -> None:
    window = Window("k", 10, 60)
    assert w.locate(window, 60.0).weight == 1.0
    assert w.locate(window, 75.0).weight == pytest.approx(0.75)
    assert w.locate(window, 119.0).weight == pytest.approx(1 / 60)
    bucket = w.locate(window, 75.0)
    assert bucket.previous == w.locate(window, 30.0).current
    assert w.used(bucket, (10, 100)) == pytest.approx(85.0)


def test_bucket_ttl_covers_the_time_it_is_read() -> None:
    sliding = w.locate(Window("k", 1, 60), 75.0)
    fixed = w.locate(Window("k", 1, 60, sliding=False), 75.0)
    assert sliding.ttl == pytest.approx(180 - 75 + w.SLACK)  # still read as "previous" until 180
    assert fixed.ttl == pytest.approx(120 - 75 + w.SLACK)


def test_bucket_ids_keep_or_add_a_hash_tag() -> None:
    assert w.locate(Window("{c:1}:minute", 1, 60), 0).current.startswith("w:{c:1}:minute:60000:")
    assert w.locate(Window("plain", 1, 60), 0).current.startswith("w:{plain}:60000:")
    assert w.hash_tag("{c:1}:minute") == "c:1"
    assert w.hash_tag("a{}b") == "a{}b"  # an empty tag does not count
    assert w.hash_tagged("a{}b") == "{a{}b}"


def test_windows_of_one_call_must_share_a_tag() -> None:
    w.check_one_slot([Window("{c}:m", 1, 60), Window("{c}:d", 1, 86400)])
    w.check_one_slot([Window("lonely", 1, 60)])
    with pytest.raises(ValueError, match="hash tag"):
        w.check_one_slot([Window("a:m", 1, 60), Window("a:d", 1, 86400)])


@pytest.mark.parametrize(
    "kwargs",
    [dict(key="", limit=1, size=1), dict(key="k", limit=-1, size=1), dict(key="k", limit=1, size=0),
     dict(key="k", limit=1, size=float("inf")), dict(key="k", limit=1, size=1, start=float("nan"))],
)
def test_window_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Window(**kwargs)


def test_window_limit_must_be_an_integer() -> None:
    with pytest.raises(TypeError):
        Window("k", 1.5, 60)  # type: ignore[arg-type]


def test_admission_rule() -> None:
    assert w.admits(1000, 700, 300)
    assert not w.admits(1000, 700.5, 300)
    assert w.admits(1000, 999.5, 0)  # amount 0: some room left
    assert not w.admits(1000, 1000, 0)
    assert not w.admits(0, 0, 0)


def test_state_rounds_remaining_down() -> None:
    window = Window("k", 1000, 60)
    bucket = w.locate(window, 90.0)  # weight 0.5
    state = w.state(window, bucket, (0, 1999))
    assert state.used == pytest.approx(999.5)
    assert state.remaining == 0
    assert w.state(window, bucket, (1200, 0)).remaining == 0


def test_wait_time_fixed_window() -> None:
    window = Window("k", 10, 60, sliding=False)
    bucket = w.locate(window, 70.0)
    assert w.wait_time(window, bucket, (10, 0), 1, 70.0) == pytest.approx(50.0)
    assert w.wait_time(window, bucket, (5, 0), 1, 70.0) == 0.0
    assert w.wait_time(window, bucket, (5, 0), 11, 70.0) is None


def test_wait_time_sliding_window_within_and_after_the_bucket() -> None:
    window = Window("k", 100, 60)
    # previous bucket 80, current 10, at t=60: needs 80*(1-f) + 10 + 20 <= 100 -> f >= 1/8
    bucket = w.locate(window, 60.0)
    assert w.wait_time(window, bucket, (10, 80), 20, 60.0) == pytest.approx(7.5)
    # current bucket alone too full: wait for it to become the previous one and fade
    assert w.wait_time(window, bucket, (90, 0), 20, 60.0) == pytest.approx(60 + 60 * (1 - 80 / 90))
    # the wait is exact: at that instant the window admits
    later = 60.0 + 7.5
    assert w.admits(100, w.used(w.locate(window, later), (10, 80)), 20)
