"""End-to-end latency of the market pipeline on the running platform
(`lakehouse bench latency`).

A producer run at a fixed rate (spread over `--processes`) sends live trades: each carries
the wall clock when it was made as its event time. Afterwards the lake says when every
trade of the run became visible, not a sample of them:
- Delta: the change data feed gives each row its commit's timestamp, in bronze and in
  silver (`trades_enriched`);
- Postgres: the enrichment folds each batch into the live one-minute bars in one ledgered
  transaction before it commits to silver; the silver commit names its batch (its mark)
  and the ledger row of that batch says when (`sink_batches.committed_at`, the
  transaction's start, so a slight under-estimate).
Latency = visible - event time. Silver holds a trade until the watermark passes it, so its
latency is at least the watermark delay; bronze's shows the stream's own pace.

Whether the rate was held: bronze's latency did not grow over the run (it grows by
r / c - 1 s per s for a stream reading c of r events/s), so the Kafka lag did not either;
otherwise the rate that growth implies is `max_sustained_rate`. (The lag the progress
listener records after each batch does not show this: a batch reads all there is when it
starts.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import psycopg

from control.freshness import market_producer, percentile
from lakehouse.layout import Layout
from lakehouse.pipelines.market import TRADES_ENRICHED as SILVER
from lakehouse.settings import Settings

BRONZE = "bronze_trades"
HELD_SLACK = 0.05  # committing this share below the sent rate still counts as held


# ---- pure -------------------------------------------------------------------------


def spread(latencies_s: pd.Series, prefix: str = "") -> dict:
    """p50, p95, p99 and max of latencies in seconds, as `<prefix>p50_s` ..."""
    values = latencies_s.dropna().tolist()
    if not values:
        return {f"{prefix}seen": 0}
    return {
        f"{prefix}seen": len(values),
        f"{prefix}p50_s": round(percentile(values, 50), 3),
        f"{prefix}p95_s": round(percentile(values, 95), 3),
        f"{prefix}p99_s": round(percentile(values, 99), 3),
        f"{prefix}max_s": round(max(values), 3),
    }


def sustained_rate(sent_per_s: float, sent_s: pd.Series, latency_s: pd.Series) -> dict:
    """Whether bronze kept up, from how its latency grew over the run: a stream that reads
    c events/s of the r sent has a queue that grows, so a trade sent t s into the run waits
    about t * (r / c - 1) s longer than the first. The growth is taken between the median
    latencies of the trades sent in the first and in the last third of the run (medians:
    the batches' saw-tooth and one slow batch move them little). Held: c within 5 % of r;
    otherwise c = r / (1 + growth) is what it sustains."""
    began, span = float(sent_s.min()), float(sent_s.max() - sent_s.min())
    if span <= 0:
        return {"max_sustained_rate": None}  # one instant: too short a run to tell
    first = latency_s[sent_s <= began + span / 3].median()
    last = latency_s[sent_s >= began + 2 * span / 3].median()
    growth = float(last - first) / (2 * span / 3)
    read_per_s = sent_per_s / (1 + max(growth, 0.0))
    held = bool(read_per_s >= (1 - HELD_SLACK) * sent_per_s)
    return {
        "latency_growth_s_per_s": round(growth, 4),
        "bronze_read_per_s": round(read_per_s, 1),
        "rate_held": held,
        "max_sustained_rate": round(sent_per_s if held else read_per_s, 1),
    }


def seconds_since_epoch(column: pd.Series) -> pd.Series:
    """Any datetime64 unit (delta-rs hands out ms and us), naive taken as UTC."""
    return (pd.to_datetime(column, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


class NotReady(RuntimeError):
    """The running pipeline has not written what the measurement reads."""


# ---- I/O --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    """The lake and Postgres names the measurement reads."""

    settings: Settings
    layout: Layout

    def version(self, table: str) -> int:
        from lakehouse.serving_sync import open_table

        found = open_table(self.settings, self.layout.table(table))
        if found is None:
            raise NotReady(
                f"{table} does not exist yet: the market pipeline creates it in its first"
                " batch (`lakehouse stream status` says when it has committed one)."
            )
        return found.version()

    def visible(self, table: str, after_version: int, prefix: str) -> pd.DataFrame:
        """The run's rows (trade ids from `prefix`) committed after `after_version`:
        trade_id, event_time, _commit_version, _commit_timestamp."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from lakehouse.serving_sync import open_table, plain_strings

        changes = plain_strings(
            pa.table(
                open_table(self.settings, self.layout.table(table))
                .load_cdf(
                    starting_version=after_version + 1,
                    columns=["trade_id", "event_time", "_commit_version", "_commit_timestamp"],
                )
                .read_all()
            )
        )
        return changes.filter(pc.starts_with(changes.column("trade_id"), prefix)).to_pandas()

    def commit_batches(self, table: str, versions: list[int]) -> dict[int, int]:
        """Version -> the streaming batch id its commit names (foreachBatch commits mark it
        in userMetadata; the first of a process also in a `txn` action)."""
        from infra.s3 import s3_client
        from spark.delta_sink import marked_batch

        bucket, _, key = self.layout.table(table).removeprefix("s3a://").partition("/")
        client = s3_client(self.settings)
        batches = {}
        for version in versions:
            body = client.get_object(Bucket=bucket, Key=f"{key}/_delta_log/{version:020d}.json")
            for line in body["Body"].read().decode().splitlines():
                action = json.loads(line)
                if "txn" in action:
                    batches[version] = int(action["txn"]["version"])
                elif "commitInfo" in action:
                    batch = marked_batch(action["commitInfo"].get("userMetadata"))
                    if batch is not None:
                        batches[version] = batch
        return batches

    def live_bars_times(self) -> dict[int, float]:
        """Enrichment batch id -> when its live bars' transaction began (s since the epoch)."""
        from spark.jobs.market.live_bars import ledger_sink
        from spark.jobs.market.trade_enrichment.job import QUERY_NAME

        sink = ledger_sink(self.layout, QUERY_NAME)
        with psycopg.connect(self.settings.postgres_dsn()) as conn:
            rows = conn.execute(
                f"SELECT batch_id, extract(epoch FROM committed_at)"
                f" FROM {self.layout.serving_schema}.sink_batches WHERE sink = %s",
                (sink,),
            ).fetchall()
        return {int(batch): float(at) for batch, at in rows}


def latencies(rows: pd.DataFrame) -> pd.Series:
    return seconds_since_epoch(rows["_commit_timestamp"]) - seconds_since_epoch(rows["event_time"])


def measure(
    settings: Settings,
    *,
    rate: float,
    seconds: float,
    processes: int,
    settle_s: float = 300.0,
    log: Callable[[str], None] = print,
) -> dict:
    tables = Tables(settings, Layout(settings))
    before = {table: tables.version(table) for table in (BRONZE, SILVER)}
    seed = int(time.time())  # its own trade ids: never the demo feed's or an earlier run's
    prefix = f"{seed}-"
    log(f"latency: {rate:.0f} events/s for {seconds:.0f} s from {processes} process(es)")
    began = time.time()
    producer = market_producer(rate, seconds, seed=seed, processes=processes)
    out, _ = producer.communicate(timeout=seconds + 120)
    ended = time.time()
    if producer.returncode != 0:
        raise RuntimeError(f"the producer failed (exit {producer.returncode}): {out[-2000:]}")
    sent = json.loads(out.strip().splitlines()[-1])
    trades = sent["sent"]["trades"]
    log(f"latency: sent {trades} trades at {sent['events_per_s']}/s; waiting for silver")
    deadline = time.monotonic() + settle_s
    while True:
        silver = tables.visible(SILVER, before[SILVER], prefix)
        if len(silver) >= trades or time.monotonic() > deadline:
            break
        log(f"latency: {len(silver)}/{trades} trades in silver")
        time.sleep(5)
    bronze = tables.visible(BRONZE, before[BRONZE], prefix)

    # Postgres: the live bars' ledger time of the batch that committed each silver row.
    batches = tables.commit_batches(SILVER, sorted(silver["_commit_version"].unique().tolist()))
    ledger = tables.live_bars_times()
    pg_visible = silver["_commit_version"].map(batches).map(ledger)
    pg = pg_visible - seconds_since_epoch(silver["event_time"])

    return {
        "benchmark": "latency",
        "rate": rate,
        "seconds": seconds,
        "processes": processes,
        "sent_events_per_s": sent["events_per_s"],
        "trades": trades,
        **spread(latencies(silver)),
        **spread(latencies(bronze), "bronze_"),
        **spread(pg, "pg_"),
        **sustained_rate(
            trades / (ended - began), seconds_since_epoch(bronze["event_time"]), latencies(bronze)
        ),
        "goal": {"p95_s": 3.0, "rate": 20_000},
    }
