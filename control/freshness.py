"""How long a trade takes to reach the dashboard's per-ticker chart on the running platform
(`lakehouse bench freshness`).

Marked trades of one symbol (FRESH) go to the market's Kafka topic with the wall clock as
event time, a few a second, while the demo feed (and, with --rate, a load producer) sends
the rest. Meanwhile the dashboard's own query path (`queries.ticker_bars`, marts plus live
bars) is polled for the symbol: its bars' trade count says how many marked trades are
visible. The stream releases trades in event-time order, so the k-th marked trade is visible
once the count has grown by k; its latency is that poll's time less its send time.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

from lakehouse.settings import PROJECT_ROOT, Settings

SYMBOL = "FRESH"
POLL_S = 0.5


def visible_at(sent: list[float], polls: list[tuple[float, int]], baseline: int) -> list[float]:
    """Per marked trade, in send order: the first poll time its count was reached (the k-th
    trade needs baseline + k); NaN-free, so trades never seen are left out."""
    seen: list[float] = []
    polls = sorted(polls)
    at = 0
    for k in range(1, len(sent) + 1):
        while at < len(polls) and polls[at][1] < baseline + k:
            at += 1
        if at == len(polls):
            break
        seen.append(polls[at][0])
    return seen


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank on the sorted values."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(sent: list[float], seen: list[float]) -> dict:
    latencies = [shown - send for send, shown in zip(sent, seen, strict=False)]
    if not latencies:
        return {"marked_trades": len(sent), "marked_seen": 0}
    return {
        "marked_trades": len(sent),
        "marked_seen": len(latencies),
        "trade_to_dashboard_p50_s": round(statistics.median(latencies), 2),
        "trade_to_dashboard_p95_s": round(percentile(latencies, 95), 2),
        "trade_to_dashboard_max_s": round(max(latencies), 2),
    }


def _chart_count(settings: Settings, schema: str) -> int:
    from dashboard import queries

    try:
        bars, _, _ = queries.ticker_bars(settings, schema, SYMBOL, "1 minute")
    except queries.NoData:
        return 0
    return int(bars["trade_count"].sum()) if not bars.empty else 0


def _send_marked(
    settings: Settings, topics: tuple[str, str], seconds: float, per_s: float, sent: list
) -> None:
    """References for SYMBOL, then `per_s` marked trades a second for `seconds`."""
    from kafka import KafkaProducer

    from lakehouse.pipelines.market import REFERENCE, TRADE

    trades_topic, reference_topic = topics
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=0)
    run = uuid.uuid4().hex[:8]
    try:
        now_ms = int(time.time() * 1000)
        reference = {
            "schema_version": REFERENCE.latest.version,
            "symbol": SYMBOL,
            "company_name": "Freshness Probe",
            "sector": "Technology",
            "event_timestamp": now_ms - 1000,
        }
        producer.send(reference_topic, key=SYMBOL.encode(), value=json.dumps(reference).encode())
        producer.flush()
        time.sleep(2)  # the reference is read first, so the trades are enriched with it
        began = time.monotonic()
        for n in range(int(seconds * per_s)):
            time.sleep(max(0.0, began + n / per_s - time.monotonic()))
            trade = {
                "schema_version": TRADE.latest.version,
                "trade_id": f"fresh-{run}-{n}",
                "symbol": SYMBOL,
                "price": 100.0 + n % 10,
                "volume": 1,
                "event_timestamp": int(time.time() * 1000),
            }
            producer.send(trades_topic, key=SYMBOL.encode(), value=json.dumps(trade).encode())
            producer.flush()
            sent.append(time.time())
    finally:
        producer.close()


def market_producer(
    rate: float, seconds: float, *, seed: int, processes: int = 1, stdout=subprocess.PIPE
) -> subprocess.Popen:
    """The market producer at `rate` events/s for `seconds`, live event times."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "producers.market",
            *("--rate", str(rate), "--duration", str(seconds)),
            *("--processes", str(processes), "--seed", str(seed)),
        ],
        cwd=PROJECT_ROOT,
        stdout=stdout,
        text=True,
    )


def measure(
    settings: Settings,
    *,
    seconds: float,
    rate: float,
    marked_per_s: float = 2.0,
    settle_s: float = 180.0,
    log: Callable[[str], None] = print,
) -> dict:
    from lakehouse.layout import Layout
    from lakehouse.pipelines.market import REFERENCE_TOPIC, TRADES_TOPIC

    layout = Layout(settings)
    schema = layout.serving_schema
    baseline = _chart_count(settings, schema)
    load = None
    if rate:
        # Its own seed: trade ids never repeat the demo feed's or an earlier run's.
        load = market_producer(rate, seconds, seed=int(time.time()), stdout=subprocess.DEVNULL)
    sent: list[float] = []
    topics = (layout.topic(TRADES_TOPIC), layout.topic(REFERENCE_TOPIC))
    sender = threading.Thread(
        target=_send_marked, args=(settings, topics, seconds, marked_per_s, sent), daemon=True
    )
    log(f"freshness: {seconds:.0f} s of marked {SYMBOL} trades, extra load {rate:.0f}/s")
    sender.start()
    polls: list[tuple[float, int]] = []
    deadline = None
    while True:
        polls.append((time.time(), _chart_count(settings, schema)))
        if not sender.is_alive():
            deadline = deadline or time.monotonic() + settle_s
            if polls[-1][1] >= baseline + len(sent) or time.monotonic() > deadline:
                break
        time.sleep(POLL_S)
    if load is not None:
        load.wait(timeout=60)
    seen = visible_at(sent, polls, baseline)
    return {
        "benchmark": "freshness",
        "rate": rate,
        "seconds": seconds,
        "marked_per_s": marked_per_s,
        **summary(sent, seen),
        "poll_s": POLL_S,
    }
