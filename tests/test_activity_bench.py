"""The activity bench's input and arithmetic, without Spark."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer

from control.bench import _user_counts
from spark.jobs.activity import bench

WATERMARK_MS = 120_000


def frame(rows: int, users: int):
    table, expected = bench.generate_events(rows, users, 3, watermark_ms=WATERMARK_MS)
    df = table.to_pandas()
    df["t"] = table.column("event_time").cast(pa.int64()).to_numpy()
    return table, df, expected


def test_events_are_in_event_time_order_with_whole_sessions():
    table, df, expected = frame(20_000, 500)
    assert table.num_rows == 20_000 and table.schema.field("event_time").type.tz == "UTC"
    assert df["t"].is_monotonic_increasing
    assert df["user_id"].str.fullmatch(r"u\d{6}").all() and df["user_id"].nunique() <= 500
    assert set(df["event_type"]) == {
        "session_start",
        "page_view",
        "click",
        "add_to_cart",
        "session_end",
    }
    by_session = df.groupby("session_id", sort=False)
    assert by_session.ngroups == expected["sessions"]
    assert (by_session["event_type"].first() == "session_start").all()
    assert (by_session["user_id"].nunique() == 1).all()
    ends = df[df["event_type"] == "session_end"]
    assert ends["session_id"].is_unique
    # A session_end is its session's last event; no gap reaches the timeout.
    assert (ends.set_index("session_id")["t"] == by_session["t"].max()[ends["session_id"]]).all()
    assert by_session["t"].agg(lambda t: t.diff().max()).max() <= bench.MAX_GAP_MS
    minutes = (by_session["t"].max() - by_session["t"].min()).median() / 60_000
    assert 1 < minutes < 5


def test_expected_closed_sessions_follow_the_closing_rule():
    _, df, expected = frame(20_000, 500)
    by_session = df.groupby("session_id")
    last = by_session["t"].max()
    ended = by_session["event_type"].agg(lambda kinds: (kinds == "session_end").any())
    threshold = last.where(ended, last + bench.TIMEOUT_MS)
    final_watermark = df["t"].max() - WATERMARK_MS
    assert expected["closed_sessions"] == int((threshold < final_watermark).sum())
    assert 0 < expected["closed_sessions"] < expected["sessions"]


def test_the_sessions_are_the_same_at_any_user_count():
    few, _ = bench.generate_events(5_000, 100, 3)
    many, _ = bench.generate_events(5_000, 1_000_000, 3)
    for column in ("session_id", "event_type", "page", "event_time"):
        assert few.column(column).equals(many.column(column))
    assert not few.column("user_id").equals(many.column("user_id"))
    assert {len(user) for user in many.column("user_id").to_pylist()} == {7}  # as the producer


def test_input_is_one_file_per_batch_in_order(tmp_path):
    bench.write_input(tmp_path / "in", 10_000, 100, 3_000, 3, WATERMARK_MS)
    files = sorted((tmp_path / "in").iterdir(), key=lambda path: path.stat().st_mtime)
    assert [path.name for path in files] == [f"part-{n:05d}.parquet" for n in range(4)]
    sizes = [pq.read_metadata(path).num_rows for path in files]
    assert sizes == [3_000, 3_000, 3_000, 1_000]


def test_steady_rate_skips_the_first_batch_and_the_no_data_ones():
    progress = [
        {"numInputRows": 100, "durationMs": {"triggerExecution": 9_000}},
        {"numInputRows": 100, "durationMs": {"triggerExecution": 1_000}},
        {"numInputRows": 100, "durationMs": {"triggerExecution": 1_000}},
        {"numInputRows": 0, "durationMs": {"triggerExecution": 5_000}},
    ]
    assert bench.steady(progress) == (200, 2.0)


def test_user_counts():
    assert _user_counts("10000,1_000_000") == (10_000, 1_000_000)
    assert [bench._short(n) for n in (10_000, 1_000_000, 2500)] == ["10k", "1m", "2500"]
    for bad in ("", "ten", "0,5"):
        with pytest.raises(typer.BadParameter):
            _user_counts(bad)
