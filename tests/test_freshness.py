"""The freshness bench's arithmetic: when each marked trade became visible (pure)."""

from __future__ import annotations

from control.freshness import percentile, summary, visible_at


def test_the_kth_trade_is_visible_at_the_first_poll_counting_k_more():
    sent = [10.0, 11.0, 12.0]
    polls = [(10.5, 5), (13.0, 6), (14.0, 6), (15.0, 8), (16.0, 8)]
    assert visible_at(sent, polls, baseline=5) == [13.0, 15.0, 15.0]


def test_trades_never_counted_are_left_out():
    assert visible_at([1.0, 2.0, 3.0], [(4.0, 1), (5.0, 2)], baseline=0) == [4.0, 5.0]


def test_summary_reports_latency_percentiles():
    sent = [float(n) for n in range(20)]
    seen = [s + (20.0 if n == 19 else 2.0) for n, s in enumerate(sent)]
    result = summary(sent, seen)
    assert result["marked_seen"] == 20
    assert result["trade_to_dashboard_p50_s"] == 2.0
    assert result["trade_to_dashboard_p95_s"] == 2.0  # the 19th of 20
    assert result["trade_to_dashboard_max_s"] == 20.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert summary([1.0], []) == {"marked_trades": 1, "marked_seen": 0}
