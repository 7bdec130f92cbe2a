"""Budget periods on calendar boundaries in IANA timezones, and budget configs."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest

from tollgate.plugins.cost_quota.budgets import Budget, window_at
from tollgate.plugins.cost_quota.periods import TOTAL_SIZE, InvalidPeriod, calendar_span, timezone
from tollgate.plugins.cost_quota.policy import CostQuotaPolicy
from tollgate.store.windows import locate


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def span_text(period: str, zone: str, moment: str) -> tuple[str, str]:
    tz = timezone(zone)
    span = calendar_span(period, tz, at(moment))
    return (dt.datetime.fromtimestamp(span.start, tz).isoformat(),
            dt.datetime.fromtimestamp(span.end, tz).isoformat())


def test_days_follow_dst_in_new_york():
    # 2026-03-08: clocks spring forward (a 23-hour day); 2026-11-01: fall back (25 hours).
    tz = timezone("America/New_York")
    spring = calendar_span("day", tz, at("2026-03-08T12:00:00-04:00"))
    autumn = calendar_span("day", tz, at("2026-11-01T12:00:00-05:00"))
    assert spring.end - spring.start == 23 * 3600 and autumn.end - autumn.start == 25 * 3600
    assert span_text("day", "America/New_York", "2026-03-08T12:00:00-04:00") == (
        "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00")


def test_weeks_start_on_monday_and_months_on_the_first():
    assert span_text("week", "Europe/Berlin", "2026-01-01T10:00:00+01:00") == (
        "2025-12-29T00:00:00+01:00", "2026-01-05T00:00:00+01:00")
    assert span_text("month", "Asia/Kolkata", "2028-02-29T23:59:59+05:30") == (
        "2028-02-01T00:00:00+05:30", "2028-03-01T00:00:00+05:30")
    assert span_text("month", "Europe/Berlin", "2026-03-31T23:59:59+02:00") == (
        "2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00")


def test_an_instant_on_the_boundary_belongs_to_the_new_period():
    tz = timezone("Pacific/Auckland")
    midnight = at("2026-07-01T00:00:00+12:00")
    assert calendar_span("month", tz, midnight).start == midnight
    assert calendar_span("month", tz, midnight - 0.001).end == midnight


def test_budget_windows():
    budget = Budget.from_config({"amount": 50, "period": "month", "scope": "consumer"}, "Europe/Berlin", {})
    assert budget.amount == 50_000_000 and budget.name == "consumer/month"
    window, span = budget.window("ns", "consumer:42", at("2026-02-10T12:00:00+01:00"))
    assert window.key == "{cq:ns}:consumer:month:USD:consumer:42" and window.limit == 50_000_000
    assert not window.sliding and window.start == at("2026-02-01T00:00:00+01:00") == span.start
    assert window.size == 28 * 86400
    bucket = locate(window, at("2026-02-10T12:00:00+01:00"))
    assert (bucket.start, bucket.reset_at) == (span.start, span.end)
    total = Budget.from_config({"amount": 1, "period": "total", "scope": "global"}, "UTC", {})
    window, span = total.window("ns", "global", 1e9)
    assert window.size == TOTAL_SIZE and span.end is None
    rolling = Budget.from_config({"amount": 1, "period": "rolling", "rolling_seconds": 3600, "scope": "header",
                                  "header_name": "X-Team"}, "UTC", {})
    assert rolling.name == "header(x-team)/rolling3600s" and rolling.ident == "header(x-team):rolling3600:USD"
    window, span = rolling.window("ns", "header:x-team:red", 7200.5)
    assert window.sliding and window.size == 3600 and (span.start, span.end) == (7200, 10800)
    with pytest.raises(ValueError):
        window_at("k", 1, "fortnight", None, timezone("UTC"), 0)


def test_budget_currency_needs_an_exchange_rate():
    eur = Budget.from_config({"amount": 10, "currency": "eur"}, "UTC", {"EUR": Fraction(9, 10)})
    assert eur.currency == "EUR" and eur.rate == Fraction(9, 10) and eur.ident.endswith(":EUR")
    with pytest.raises(ValueError, match="exchange_rates.GBP"):
        Budget.from_config({"amount": 10, "currency": "GBP"}, "UTC", {})


@pytest.mark.parametrize("spec, message", [
    ({"amount": 1, "period": "rolling"}, "rolling_seconds"),
    ({"amount": 1, "scope": "header"}, "header_name"),
    ({"amount": 1, "scope": "planet"}, "scope"),
    ({"amount": 0.0000001}, "positive"),
])
def test_invalid_budgets(spec, message):
    with pytest.raises(ValueError, match=message):
        Budget.from_config(spec, "UTC", {})


def test_invalid_configs():
    with pytest.raises(InvalidPeriod):
        timezone("Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="same scope"):
        CostQuotaPolicy({"budgets": [{"amount": 1}, {"amount": 2}]}, "tollgate-cost-quota")
    with pytest.raises(ValueError, match="default_price"):
        CostQuotaPolicy({"budgets": [{"amount": 1}], "unknown_model": "default_price"}, "tollgate-cost-quota")
    with pytest.raises(ValueError, match="Mars"):
        CostQuotaPolicy({"budgets": [{"amount": 1}], "timezone": "Mars/Base"}, "tollgate-cost-quota")
    # Same scope and period in two currencies are two budgets.
    policy = CostQuotaPolicy({"budgets": [{"amount": 1}, {"amount": 2, "currency": "EUR"}],
                              "exchange_rates": {"EUR": 0.9}}, "tollgate-cost-quota")
    assert [b.currency for b in policy.budgets] == ["USD", "EUR"]
