"""The enrichment state function, in plain pandas, against a merge_asof oracle."""

from __future__ import annotations

import itertools

import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st

from spark.jobs.market.trade_enrichment.state import (
    FLUSH_WATERMARK_MS,
    INPUT_COLUMNS,
    empty_input,
    empty_state,
    replay,
    state_from_bytes,
    state_to_bytes,
    step,
)

_offsets = iter(range(10**9))


def trade(trade_id: str, symbol: str, t: int, price: float = 10.0, volume: int = 5) -> dict:
    return {
        "kind": "trade",
        "trade_id": trade_id,
        "symbol": symbol,
        "event_time_ms": t,
        "price": price,
        "volume": volume,
        "company_name": None,
        "sector": None,
        "kafka_partition": 0,
        "kafka_offset": next(_offsets),
    }


def reference(symbol: str, t: int, company: str, sector: str = "Energy") -> dict:
    return {
        "kind": "reference",
        "trade_id": None,
        "symbol": symbol,
        "event_time_ms": t,
        "price": None,
        "volume": None,
        "company_name": company,
        "sector": sector,
        "kafka_partition": 1,
        "kafka_offset": next(_offsets),
    }


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(INPUT_COLUMNS)) if rows else empty_input()


def by_status(output: pd.DataFrame, status: str) -> pd.DataFrame:
    return output[output["status"] == status].set_index("trade_id")


def enriched_once(batch: pd.DataFrame) -> pd.DataFrame:
    """One on-time batch, then a flush: what leaves as enriched."""
    held = step(empty_state(), batch, 0)
    return by_status(step(held.state, empty_input(), FLUSH_WATERMARK_MS).output, "enriched")


def test_trade_older_than_newest_reference_gets_the_reference_valid_at_its_time():
    batch = frame(
        reference("ABC", 100, "Old Co"),
        reference("ABC", 200, "New Co"),
        trade("t1", "ABC", 150),
        trade("t2", "ABC", 250),
    )
    out = enriched_once(batch)
    assert out.loc["t1", "company_name"] == "Old Co"
    assert out.loc["t2", "company_name"] == "New Co"


def test_reference_at_the_trade_time_applies_and_none_before_means_null():
    batch = frame(reference("ABC", 100, "Co"), trade("t1", "ABC", 100), trade("t0", "ABC", 99))
    out = enriched_once(batch)
    assert out.loc["t1", "company_name"] == "Co"
    assert out.loc["t0", "company_name"] is None or pd.isna(out.loc["t0", "company_name"])


def test_trades_wait_until_the_watermark_passes_them():
    first = step(empty_state(), frame(trade("t1", "ABC", 1000), trade("t2", "ABC", 2000)), 500)
    assert first.output.empty
    assert first.next_timeout_ms == 1000
    # A reference that arrives after the trade but is older than it still applies to it.
    with_reference = step(first.state, frame(reference("ABC", 900, "Co")), 500)
    assert with_reference.output.empty
    second = step(with_reference.state, empty_input(), 1500)
    out = by_status(second.output, "enriched")
    assert list(out.index) == ["t1"]
    assert out.loc["t1", "company_name"] == "Co"
    assert second.next_timeout_ms == 2000


def test_with_the_delay_known_trades_leave_in_their_own_batch():
    batch = frame(
        reference("ABC", 500, "Co"),
        trade("t1", "ABC", 1000),
        trade("t2", "ABC", 1995),
        reference("ABC", 2000, "New Co"),
    )
    # The next watermark is at least 2000 - 10: t1 can leave now, t2 waits for it.
    first = step(empty_state(), batch, 0, delay_ms=10)
    assert list(first.output["trade_id"]) == ["t1"]
    assert first.output["company_name"].item() == "Co"
    assert list(first.state.trades["trade_id"]) == ["t2"] and first.next_timeout_ms == 1995
    # A reference t1 would have taken arrives with the next batch: late by then, unused.
    second = step(first.state, frame(reference("ABC", 999, "Too Late Co")), 1990, delay_ms=10)
    assert list(second.output["status"]) == ["late_reference"]
    final = step(second.state, empty_input(), 2000, delay_ms=10)
    assert by_status(final.output, "enriched").loc["t2", "company_name"] == "Co"


def test_duplicates_within_a_batch_and_against_held_trades():
    first = step(empty_state(), frame(trade("t1", "A", 1000), trade("t1", "A", 1000)), 0)
    assert list(first.output["status"]) == ["duplicate"]
    second = step(first.state, frame(trade("t1", "A", 1000), trade("t2", "A", 1001)), 0)
    assert list(second.output["status"]) == ["duplicate"]
    final = step(second.state, empty_input(), FLUSH_WATERMARK_MS)
    assert sorted(final.output["trade_id"]) == ["t1", "t2"]
    assert set(final.output["status"]) == {"enriched"}


def test_late_rows_are_reported_not_used():
    result = step(
        empty_state(),
        frame(trade("late", "A", 10), reference("A", 20, "Late Co"), trade("t", "A", 500)),
        100,
    )
    assert sorted(result.output["status"]) == ["late", "late_reference"]
    assert result.output.loc[result.output["status"] == "late", "trade_id"].item() == "late"
    flushed = by_status(step(result.state, empty_input(), FLUSH_WATERMARK_MS).output, "enriched")
    assert pd.isna(flushed.loc["t", "company_name"])  # the late reference was not used


def test_reference_history_keeps_the_latest_below_the_watermark_and_all_above():
    batch = frame(
        reference("A", 10, "a10"),
        reference("A", 20, "a20"),
        reference("A", 300, "a300"),
        reference("B", 30, "b30"),
    )
    kept = step(step(empty_state(), batch, 0).state, empty_input(), 100).state
    assert sorted(kept.references["company_name"]) == ["a20", "a300", "b30"]


def test_state_round_trips_through_bytes():
    state = step(empty_state(), frame(trade("t", "A", 1000), reference("A", 5, "Co")), 0).state
    assert (len(state.trades), len(state.references)) == (1, 1)
    back = state_from_bytes(state_to_bytes(state))
    for got, want in ((back.trades, state.trades), (back.references, state.references)):
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    assert len(state_from_bytes(state_to_bytes(empty_state()))) == 0


def test_output_keeps_the_trade_fields():
    out = enriched_once(frame(trade("t", "A", 1, 9.5, 7)))
    assert out.loc["t", ["symbol", "price", "volume"]].tolist() == ["A", 9.5, 7]


# ---- property: a simulated micro-batch driver against the merge_asof oracle ------------


def oracle(trades: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    refs = references.sort_values(["event_time_ms", "kafka_partition", "kafka_offset"])
    merged = pd.merge_asof(
        trades.drop(columns=["company_name", "sector"]).sort_values("event_time_ms"),
        refs[["symbol", "event_time_ms", "company_name", "sector"]],
        on="event_time_ms",
        by="symbol",
        direction="backward",
    )
    return merged.set_index("trade_id")[["company_name", "sector"]]


events = st.lists(
    st.tuples(
        st.sampled_from(["trade", "reference"]),
        st.sampled_from(["AA", "BB", "CC"]),
        st.integers(1000, 1015),
        st.integers(0, 40),  # trade id: small range, so duplicates happen
    ),
    min_size=1,
    max_size=120,
)


def arrivals(events: list[tuple]) -> tuple[list[dict], dict[str, dict]]:
    """Rows in arrival order, and the first copy of each trade id."""
    rows = [
        trade(f"id{n}", s, t) if kind == "trade" else reference(s, t, f"{s}@{t}", f"sec{t % 3}")
        for kind, s, t, n in events
    ]
    # Duplicates are exact re-sends: same event time and symbol as the first copy.
    first_copy: dict[str, dict] = {}
    for row in rows:
        if row["kind"] == "trade":
            original = first_copy.setdefault(row["trade_id"], row)
            row["event_time_ms"], row["symbol"] = original["event_time_ms"], original["symbol"]
    return rows, first_copy


BUCKET_OF = {"AA": 0, "BB": 1, "CC": 1}  # two groups, as the job's symbol hash buckets


@settings(max_examples=200, deadline=None)
# At the release bound exactly (a trade `delay` behind its batch's newest row must wait):
# a re-sent copy in the next batch, and a reference at the trade's own time.
@example(
    events=[("trade", "AA", 1000, 0), ("trade", "AA", 1005, 1), ("trade", "AA", 1000, 0)],
    cuts=[2],
    delay=5,
    early=True,
)
@example(
    events=[
        ("reference", "AA", 1000, 0),
        ("trade", "AA", 1003, 1),
        ("trade", "AA", 1008, 2),
        ("reference", "AA", 1003, 0),
    ],
    cuts=[3],
    delay=5,
    early=True,
)
@given(
    events=events,
    cuts=st.lists(st.integers(0, 120), max_size=6),
    delay=st.integers(0, 8),
    early=st.booleans(),
)
def test_matches_the_oracle_under_any_arrival_order(events, cuts, delay, early):
    """A simulated query: batches of arrivals, two buckets each called as Spark calls a
    group (rows of its own, or a held trade's timeout passed), and one global watermark
    that advances as Spark's does. With `early` the function knows the delay."""
    rows, first_copy = arrivals(events)
    bounds = sorted({0, len(rows), *[c for c in cuts if c < len(rows)]})
    batches = [rows[a:b] for a, b in itertools.pairwise(bounds)]

    states = {bucket: empty_state() for bucket in set(BUCKET_OF.values())}
    timeouts: dict[int, int | None] = dict.fromkeys(states)
    watermark, max_seen = 0, 0
    outputs, on_time_refs = [], []
    for batch_rows in batches:
        # Like Spark without EventTimeTimeout: nothing is filtered before the function.
        on_time_refs += [
            r for r in batch_rows if r["kind"] == "reference" and r["event_time_ms"] >= watermark
        ]
        for bucket, state in states.items():
            own = [r for r in batch_rows if BUCKET_OF[r["symbol"]] == bucket]
            timed_out = timeouts[bucket] is not None and timeouts[bucket] < watermark
            if not own and not timed_out:
                continue
            result = step(
                state_from_bytes(state_to_bytes(state)),
                frame(*own),
                watermark,
                delay if early else None,
            )
            outputs.append(result.output)
            states[bucket], timeouts[bucket] = result.state, result.next_timeout_ms
        max_seen = max([max_seen, *[r["event_time_ms"] for r in batch_rows]])
        watermark = max(watermark, max_seen - delay)
    finals = [step(state, empty_input(), FLUSH_WATERMARK_MS) for state in states.values()]
    output = pd.concat([*outputs, *(f.output for f in finals)], ignore_index=True)
    assert all(f.state.trades.empty for f in finals)

    trades_in = [r for r in rows if r["kind"] == "trade"]
    refs_in = [r for r in rows if r["kind"] == "reference"]
    # Every row accounted for exactly once.
    assert (output["status"] != "late_reference").sum() == len(trades_in)
    assert (output["status"] == "late_reference").sum() == len(refs_in) - len(on_time_refs)
    enriched = output[output["status"] == "enriched"]
    assert enriched["trade_id"].is_unique
    late_ids = set(output.loc[output["status"] == "late", "trade_id"])
    assert set(enriched["trade_id"]) | late_ids == {r["trade_id"] for r in trades_in}

    if not enriched.empty:
        expected = oracle(frame(*first_copy.values()), frame(*on_time_refs))
        got = enriched.set_index("trade_id")[["company_name", "sector"]]
        expected = expected.loc[got.index]
        # A trade whose first copy was late is enriched from a later copy: same answer.
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


@settings(max_examples=200, deadline=None)
@given(events=events)
def test_replay_is_the_oracle_over_first_copies(events):
    rows, first_copy = arrivals(events)
    output = replay(frame(*rows))
    trades_in = [r for r in rows if r["kind"] == "trade"]
    assert set(output["status"]) <= {"enriched", "duplicate"}
    assert len(output) == len(trades_in)
    enriched = output[output["status"] == "enriched"].set_index("trade_id")
    assert sorted(enriched.index) == sorted(first_copy)
    # The copy kept is the first one in Kafka order, as in the stream.
    assert all(enriched.loc[i, "kafka_offset"] == r["kafka_offset"] for i, r in first_copy.items())
    refs_in = [r for r in rows if r["kind"] == "reference"]
    if refs_in and len(enriched):
        expected = oracle(frame(*first_copy.values()), frame(*refs_in)).loc[enriched.index]
        got = enriched[["company_name", "sector"]]
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
