"""The sessionization state function, in plain pandas/pyarrow, against a group-by oracle."""

from __future__ import annotations

import itertools
import random
import zlib

import pandas as pd
import pyarrow as pa
import pytest

from spark.jobs.activity.sessions_state import (
    FLUSH_WATERMARK_MS,
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
    STATE_COLUMNS,
    empty_input,
    empty_output,
    empty_state,
    state_from_bytes,
    state_to_bytes,
    step,
)

TIMEOUT = 15 * 60 * 1000


def ev(user: str, session: str, kind: str, t: int) -> dict:
    return {"user_id": user, "session_id": session, "event_type": kind, "event_time_ms": t}


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(INPUT_COLUMNS)) if rows else empty_input()


def rows_of(output: pd.DataFrame) -> list[dict]:
    return output.sort_values(["user_id", "session_id"]).to_dict("records")


def ordered(output: pd.DataFrame) -> pd.DataFrame:
    return output.sort_values(["user_id", "session_id"], ignore_index=True)


def test_session_with_an_end_event_closes_once_the_watermark_passes_it():
    batch = frame(
        ev("u1", "s1", "session_start", 1000),
        ev("u1", "s1", "page_view", 2000),
        ev("u1", "s1", "click", 3000),
        ev("u1", "s1", "session_end", 5000),
    )
    first = step(empty_state(), batch, 0, TIMEOUT)
    assert first.output.empty and first.next_timeout_ms == 5000
    at_threshold = step(first.state, empty_input(), 5000, TIMEOUT)
    assert at_threshold.output.empty and at_threshold.next_timeout_ms == 5000
    closed = step(at_threshold.state, empty_input(), 5001, TIMEOUT)
    assert rows_of(closed.output) == [
        {
            "user_id": "u1",
            "session_id": "s1",
            "session_start_ms": 1000,
            "session_end_ms": 5000,
            "duration_ms": 4000,
            "event_count": 4,
            "pages_viewed": 1,
            "end_reason": "end_event",
        }
    ]
    assert closed.state.num_rows == 0 and closed.next_timeout_ms is None


def test_a_data_call_past_the_threshold_closes_in_the_same_call():
    batch = frame(ev("u", "s", "session_start", 10), ev("u", "s", "session_end", 20))
    result = step(empty_state(), batch, 21, TIMEOUT)
    assert list(result.output["end_reason"]) == ["end_event"]
    assert result.state.num_rows == 0 and result.next_timeout_ms is None


def test_abandoned_session_times_out_only_past_last_event_plus_timeout():
    batch = frame(ev("u1", "s1", "session_start", 1000), ev("u1", "s1", "page_view", 2000))
    threshold = 2000 + TIMEOUT
    first = step(empty_state(), batch, 1500, TIMEOUT)
    assert first.output.empty and first.next_timeout_ms == threshold
    before = step(first.state, [], threshold - 1, TIMEOUT)
    at = step(before.state, [], threshold, TIMEOUT)
    assert before.output.empty and at.output.empty
    assert at.next_timeout_ms == threshold and at.state.num_rows == 1
    closed = step(at.state, [], threshold + 1, TIMEOUT)
    [row] = rows_of(closed.output)
    assert row["end_reason"] == "timeout"
    assert (row["session_start_ms"], row["session_end_ms"], row["duration_ms"]) == (
        1000,
        2000,
        1000,
    )
    assert (row["event_count"], row["pages_viewed"]) == (2, 1)
    assert closed.state.num_rows == 0 and closed.next_timeout_ms is None


def test_a_later_event_pushes_the_timeout_back():
    first = step(empty_state(), frame(ev("u", "s", "session_start", 1000)), 0, TIMEOUT)
    assert first.next_timeout_ms == 1000 + TIMEOUT
    second = step(first.state, frame(ev("u", "s", "click", 1000 + TIMEOUT)), 1000, TIMEOUT)
    assert second.output.empty and second.next_timeout_ms == 1000 + 2 * TIMEOUT
    assert step(second.state, [], 1001 + TIMEOUT, TIMEOUT).output.empty


def test_end_waits_for_the_latest_event_and_takes_the_latest_end():
    batch = frame(
        ev("u", "s", "session_start", 100),
        ev("u", "s", "session_end", 400),
        ev("u", "s", "session_end", 500),
        ev("u", "s", "click", 700),  # after the end: the session waits for it
    )
    first = step(empty_state(), batch, 0, TIMEOUT)
    assert first.next_timeout_ms == 700
    assert step(first.state, [], 700, TIMEOUT).output.empty
    [row] = rows_of(step(first.state, [], 701, TIMEOUT).output)
    assert (row["session_end_ms"], row["duration_ms"], row["event_count"]) == (500, 400, 4)
    assert row["end_reason"] == "end_event"


def test_pages_viewed_counts_page_views_only():
    kinds = ["session_start", "page_view", "click", "page_view", "add_to_cart", "page_view"]
    batch = frame(*(ev("u", "s", kind, 10 * i) for i, kind in enumerate(kinds)))
    batch = pd.concat([batch, frame(ev("u", "s", "session_end", 100))], ignore_index=True)
    [row] = rows_of(step(empty_state(), batch, FLUSH_WATERMARK_MS, TIMEOUT).output)
    assert (row["pages_viewed"], row["event_count"]) == (3, 7)


def test_split_across_calls_in_shuffled_order_matches_one_call():
    kinds = ["page_view", "click", "add_to_cart", "page_view", "click", "page_view"] * 4
    events = [ev("u", "s", "session_start", 10_000)]
    events += [ev("u", "s", kind, 10_000 + 1000 * (i + 1)) for i, kind in enumerate(kinds)]
    events += [ev("u", "s", "session_end", 40_000)]
    at_once = step(empty_state(), frame(*events), FLUSH_WATERMARK_MS, TIMEOUT).output
    for seed in range(5):
        shuffled = random.Random(seed).sample(events, len(events))
        state, outputs = empty_state(), []
        for row in shuffled:  # every event on time: watermark below all of them
            result = step(state_from_bytes(state_to_bytes(state)), frame(row), 9_999, TIMEOUT)
            state = result.state
            outputs.append(result.output)
        assert all(o.empty for o in outputs) and state.num_rows == 1
        final = step(state, empty_input(), FLUSH_WATERMARK_MS, TIMEOUT).output
        pd.testing.assert_frame_equal(final, at_once)
    [row] = rows_of(at_once)
    assert (row["event_count"], row["pages_viewed"], row["duration_ms"]) == (26, 12, 30_000)


def test_spark_chunks_are_one_batch():
    rows = [ev("u", "s", "session_start", 1), ev("u", "s", "page_view", 2)]
    rows += [ev("u", "s", "session_end", 3), ev("v", "t", "page_view", 2)]
    # As Spark hands them: a generator of pieces, with the grouping column too.
    chunks = (frame(*rows[i : i + 2]).assign(bucket=7) for i in range(0, len(rows), 2))
    result = step(empty_state(), chunks, 4, TIMEOUT)
    assert list(result.output["user_id"]) == ["u"]
    assert result.state.to_pandas()["user_id"].tolist() == ["v"]


def test_many_users_in_one_bucket():
    rows, ended = [], set()
    for n in range(1000):
        user, start = f"user{n:04d}", 1000 * n
        rows += [ev(user, "a", "session_start", start), ev(user, "a", "page_view", start + 10)]
        if n % 3 == 0:
            rows.append(ev(user, "a", "session_end", start + 20))
            ended.add(user)
        rows.append(ev(user, "b", "click", start + 500))  # a second, abandoned session
    first = step(empty_state(), frame(*rows), 0, TIMEOUT)
    assert first.output.empty and first.state.num_rows == 2000
    assert first.next_timeout_ms == 20  # user0000's end
    # Half way: the ended sessions of the first 500 users are closed; nothing timed out.
    half = step(first.state, [], 500_000, TIMEOUT)
    assert set(half.output["end_reason"]) == {"end_event"}
    assert set(half.output["user_id"]) == {u for u in ended if int(u[4:]) < 500}
    assert half.next_timeout_ms == 501_020  # user0501's end (500 has none)
    flushed = step(half.state, [], FLUSH_WATERMARK_MS, TIMEOUT)
    everything = pd.concat([half.output, flushed.output], ignore_index=True)
    assert len(everything) == 2000 and flushed.state.num_rows == 0
    reasons = everything.set_index(["user_id", "session_id"])["end_reason"]
    assert (reasons.xs("b", level="session_id") == "timeout").all()
    a_reasons = reasons.xs("a", level="session_id")
    assert sorted(a_reasons[a_reasons == "end_event"].index) == sorted(ended)


def test_next_timeout_is_the_smallest_threshold():
    batch = frame(
        ev("a", "1", "session_start", 50_000),
        ev("a", "1", "session_end", 60_000),  # threshold 60_000
        ev("b", "1", "click", 1000),  # threshold 1000 + TIMEOUT
        ev("c", "1", "click", 2000),  # threshold 2000 + TIMEOUT
    )
    first = step(empty_state(), batch, 0, TIMEOUT)
    assert first.next_timeout_ms == 60_000
    second = step(first.state, [], 60_001, TIMEOUT)
    assert list(second.output["user_id"]) == ["a"]
    assert second.next_timeout_ms == 1000 + TIMEOUT
    third = step(second.state, [], 1001 + TIMEOUT, TIMEOUT)
    assert list(third.output["user_id"]) == ["b"]
    assert third.next_timeout_ms == 2000 + TIMEOUT


def test_empty_input_timeout_call():
    for chunks in (empty_input(), [], iter([empty_input(), empty_input()])):
        result = step(empty_state(), chunks, 10**12, TIMEOUT)
        assert result.next_timeout_ms is None and result.state.num_rows == 0
        pd.testing.assert_frame_equal(result.output, empty_output())
    assert list(empty_output().columns) == list(OUTPUT_COLUMNS)


def test_output_dtypes_match_the_empty_output():
    batch = frame(ev("u", "s", "session_start", 1), ev("v", "t", "click", 2))
    output = step(empty_state(), batch, FLUSH_WATERMARK_MS, TIMEOUT).output
    assert list(output.columns) == list(OUTPUT_COLUMNS)
    assert output.dtypes.equals(empty_output().dtypes)


def test_state_round_trips_through_bytes():
    batch = frame(
        ev("u", "s", "session_start", 1000),
        ev("u", "s", "page_view", 1100),
        ev("v", "t", "session_end", 1200),
    )
    state = step(empty_state(), batch, 0, TIMEOUT).state
    assert state.column_names == list(STATE_COLUMNS) and state.num_rows == 2
    back = state_from_bytes(state_to_bytes(state))
    assert back.equals(state)
    assert back.to_pandas()["end_ms"].isna().tolist() == [True, False]
    assert state_from_bytes(state_to_bytes(empty_state())).num_rows == 0
    # Continuing from the decoded state is continuing from the state itself.
    more = frame(ev("u", "s", "session_end", 1300))
    via_bytes = step(back, more, FLUSH_WATERMARK_MS, TIMEOUT).output
    direct = step(state, more, FLUSH_WATERMARK_MS, TIMEOUT).output
    pd.testing.assert_frame_equal(ordered(via_bytes), ordered(direct))


def test_state_from_bytes_rejects_another_schema():
    other = pa.table({"user_id": ["u"], "session_id": ["s"], "pages_visited": [1]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, other.schema) as writer:
        writer.write_table(other)
    with pytest.raises(ValueError, match="sessions state"):
        state_from_bytes(sink.getvalue().to_pybytes())


def test_inputs_are_not_modified():
    batch = frame(ev("u", "s", "session_start", 1), ev("u", "s", "session_end", 2))
    copy = batch.copy()
    state = step(empty_state(), batch, 0, TIMEOUT).state
    step(state, batch, 3, TIMEOUT)
    pd.testing.assert_frame_equal(batch, copy)
    assert state.num_rows == 1


# ---- property: a simulated micro-batch driver against a per-session group-by oracle -------

SMALL_TIMEOUT = 1000
BUCKETS = 3


def bucket_of(user: str) -> int:
    return zlib.crc32(user.encode()) % BUCKETS


def random_sessions(rng: random.Random) -> list[dict]:
    """Well-formed sessions: consecutive events at most the timeout apart (exactly it
    sometimes), ties allowed, a session_end (if any) at the session's latest time."""
    events = []
    for user in (f"u{n}" for n in range(rng.randint(1, 12))):
        for session in (f"s{k}" for k in range(rng.randint(1, 3))):
            t = rng.randint(0, 20_000)
            kinds = ["session_start"] if rng.random() < 0.8 else []
            kinds += rng.choices(["page_view", "click", "add_to_cart"], k=rng.randint(0, 6))
            for i, kind in enumerate(kinds):
                if i:
                    t += rng.choice([0, 1, rng.randint(0, SMALL_TIMEOUT), SMALL_TIMEOUT])
                events.append(ev(user, session, kind, t))
            if rng.random() < 0.6 or not kinds:
                t += rng.choice([0, rng.randint(0, SMALL_TIMEOUT), SMALL_TIMEOUT]) if kinds else 0
                events.append(ev(user, session, "session_end", t))
    return events


def oracle(events: pd.DataFrame, watermark_ms: int, timeout_ms: int) -> pd.DataFrame:
    """Sessions closed at `watermark_ms`, from one group-by over all their events."""
    is_end = events["event_type"] == "session_end"
    rows = events.assign(
        end=events["event_time_ms"].where(is_end),
        page=(events["event_type"] == "page_view").astype("int64"),
    )
    sessions = rows.groupby(["user_id", "session_id"], as_index=False).agg(
        start=("event_time_ms", "min"),
        last=("event_time_ms", "max"),
        end=("end", "max"),
        event_count=("event_time_ms", "size"),
        pages_viewed=("page", "sum"),
    )
    ended = sessions["end"].notna()
    sessions["threshold"] = sessions["last"].where(ended, sessions["last"] + timeout_ms)
    closed = sessions[sessions["threshold"] < watermark_ms]
    ended = closed["end"].notna()
    end = closed["end"].where(ended, closed["last"]).astype("int64")
    return pd.DataFrame(
        {
            "user_id": closed["user_id"],
            "session_id": closed["session_id"],
            "session_start_ms": closed["start"].astype("int64"),
            "session_end_ms": end,
            "duration_ms": end - closed["start"],
            "event_count": closed["event_count"].astype("int64"),
            "pages_viewed": closed["pages_viewed"].astype("int64"),
            "end_reason": ended.map({True: "end_event", False: "timeout"}),
        }
    ).astype(empty_output().dtypes.to_dict())


@pytest.mark.parametrize("seed", range(60))
def test_matches_the_oracle_under_any_batching(seed):
    """Events arrive with bounded disorder, cut into random micro-batches; each batch has a
    watermark that never moves back and is below every event still to arrive (Spark drops
    rows at or behind it). Buckets are called as Spark calls a group: with rows of its own,
    or when its timeout is below the watermark."""
    rng = random.Random(seed)
    events = random_sessions(rng)
    disorder = rng.choice([0, 300, 3000, 30_000])
    arrival = sorted(events, key=lambda r: r["event_time_ms"] + rng.randint(0, disorder))
    cuts = sorted(rng.randint(0, len(arrival)) for _ in range(rng.randint(0, 8)))
    bounds = [0, *cuts, len(arrival)]
    batches = [arrival[a:b] for a, b in itertools.pairwise(bounds)]
    watermarks, watermark = [], -1
    for k in range(len(batches)):
        to_come = [r["event_time_ms"] for batch in batches[k:] for r in batch]
        below_all = min(to_come, default=watermark + 1) - 1
        watermark = max(watermark, below_all - rng.choice([0, 0, 1, rng.randint(0, 2000)]))
        watermarks.append(watermark)
    last_time = max(r["event_time_ms"] for r in events)
    final = rng.choice([watermark, last_time, last_time + 1, last_time + SMALL_TIMEOUT + 1])
    batches.append([])  # a last batch without data, run for the timeouts
    watermarks.append(max(watermark, final))

    states = {b: empty_state() for b in range(BUCKETS)}
    timeouts: dict[int, int | None] = dict.fromkeys(states)
    emitted = []
    for batch, watermark in zip(batches, watermarks, strict=True):
        assert all(r["event_time_ms"] > watermark for r in batch)  # nothing late
        for bucket in states:
            own = [r for r in batch if bucket_of(r["user_id"]) == bucket]
            timed_out = timeouts[bucket] is not None and timeouts[bucket] < watermark
            if not own and not timed_out:
                continue
            # Spark's chunks: the bucket's rows in a few pieces.
            pieces = [frame(*own[i : i + 3]) for i in range(0, len(own), 3)]
            result = step(
                state_from_bytes(state_to_bytes(states[bucket])), pieces, watermark, SMALL_TIMEOUT
            )
            emitted.append(result.output.assign(watermark=watermark))
            states[bucket], timeouts[bucket] = result.state, result.next_timeout_ms
            # The timeout is one Spark accepts: not below the watermark.
            assert result.next_timeout_ms is None or result.next_timeout_ms >= watermark

    output = pd.concat([empty_output().assign(watermark=0), *emitted], ignore_index=True)
    all_events = frame(*events)
    expected = oracle(all_events, watermarks[-1], SMALL_TIMEOUT)
    got = output.drop(columns="watermark")
    pd.testing.assert_frame_equal(ordered(got.astype(expected.dtypes.to_dict())), ordered(expected))
    # Each session left in the first batch whose watermark passed its threshold.
    for row in output.itertuples():
        # Well-formed sessions: an ended one's last event is its end.
        threshold = row.session_end_ms + (SMALL_TIMEOUT if row.end_reason == "timeout" else 0)
        assert row.watermark == next(w for w in watermarks if w > threshold)
    # What is still open is every other session, and each bucket's timeout is its minimum.
    still_open = pd.concat([s.to_pandas() for s in states.values()], ignore_index=True)
    keys = set(zip(all_events["user_id"], all_events["session_id"], strict=True))
    closed_keys = set(zip(got["user_id"], got["session_id"], strict=True))
    open_keys = set(zip(still_open["user_id"], still_open["session_id"], strict=True))
    assert len(still_open) == len(open_keys)
    assert open_keys == keys - closed_keys
    for bucket, state in states.items():
        everything = oracle(
            frame(*[r for r in events if bucket_of(r["user_id"]) == bucket]),
            FLUSH_WATERMARK_MS,
            SMALL_TIMEOUT,
        )
        opened = state.to_pandas()
        expected_timeout = None
        if len(opened):
            left = everything.merge(opened, on=["user_id", "session_id"])
            assert len(left) == len(opened)
            thresholds = left["session_end_ms"] + (left["end_reason"] == "timeout") * SMALL_TIMEOUT
            expected_timeout = int(thresholds.min())
        assert timeouts[bucket] == expected_timeout
