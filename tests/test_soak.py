"""The soak run's load, verdicts and readings, without services: a producer per registered
pipeline, growth of RSS, state and lag after the warm-up, the checkpoints it reads lag and
state from, and its plot."""

from __future__ import annotations

from dataclasses import asdict

from PIL import Image

from control.soak import (
    Sample,
    plot,
    producer_commands,
    rss_growth,
    state_stores,
    thirds,
    verdicts,
)

RATE = 100.0


def samples(rss, lag, state_mb=None, step_s=60.0) -> list[dict]:
    state_mb = state_mb or [10.0] * len(rss)
    return [
        asdict(
            Sample(
                t_s=i * step_s,
                rss_mb={"driver market_pipeline": r, "kafka": 500.0},
                lag={"market_bronze": n},
                state_mb={"trades_enrichment": m},
                state_files={"trades_enrichment": 20},
                state_rows={"trades_enrichment": 1000},
                rows_per_s=RATE,
            )
        )
        for i, (r, n, m) in enumerate(zip(rss, lag, state_mb, strict=True))
    ]


def test_thirds_and_growth_read_the_ends_of_the_series():
    assert thirds([1, 1, 1, 5, 5, 5]) == (1, 5)
    assert thirds([7]) == (7, 7)
    # One sample off at either end (a batch in flight) does not move the median of three.
    assert rss_growth([100, 300, 100, 100, 105, 400, 105]) == 0.05
    assert rss_growth([100]) is None


def test_a_steady_platform_passes_every_verdict():
    flat = samples(rss=[1000.0] * 30, lag=[2000] * 30)
    result = verdicts(flat, warmup_s=300, rate=RATE)
    assert result["rss_held"] and result["state_bounded"] and result["lag_held"]
    assert result["rss_growth"]["driver market_pipeline"] == 0.0
    assert result["rows_per_s_mean"] == RATE


def test_growth_after_the_warm_up_fails_and_names_what_grew():
    # The warm-up (first 5 samples) may grow as it likes; afterwards the driver grows 20 %.
    rss = [500.0, 700, 900, 1000, 1000] + [1000 + 8 * i for i in range(25)]
    lag = [0] * 5 + [5000 + 400 * i for i in range(25)]
    state = [1.0] * 5 + [10.0 + i for i in range(25)]
    result = verdicts(samples(rss, lag, state), warmup_s=300, rate=RATE)
    assert not result["rss_held"] and set(result["rss_grown"]) == {"driver market_pipeline"}
    assert not result["lag_held"] and set(result["lag_grown"]) == {"market_bronze"}
    assert not result["state_bounded"]
    assert set(result["state_grown"]) == {"trades_enrichment.state_mb"}


def test_a_lag_that_stays_under_ten_seconds_of_input_is_not_growth():
    lag = [0] * 10 + [10 * i for i in range(20)]  # grows, but ends at 190 < 10 s x 100/s
    result = verdicts(samples([1000.0] * 30, lag), warmup_s=0, rate=RATE)
    assert result["lag_held"]


def test_state_stores_are_measured_per_query_with_the_fullest_partition(tmp_path):
    for partition, files in ((0, 3), (1, 5)):
        folder = tmp_path / "trades_enrichment" / "state" / "0" / str(partition)
        folder.mkdir(parents=True)
        for n in range(files):
            (folder / f"{n}.changelog").write_bytes(b"x" * 1024)
    (tmp_path / "market_bronze" / "offsets").mkdir(parents=True)  # stateless
    sizes, files = state_stores(tmp_path)
    assert files == {"trades_enrichment": 5}
    assert sizes == {"trades_enrichment": round(8 * 1024 / 2**20, 2)}


def test_the_plot_is_a_png_of_three_panels(tmp_path):
    path = tmp_path / "soak.png"
    plot(samples(rss=[1000.0 + i for i in range(10)], lag=[i * 10 for i in range(10)]), 120, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (1200, 3 * 260 + 40)
        # Something was drawn in every panel, not only the frames: more than two colours.
        assert len(image.getcolors(maxcolors=10_000) or []) > 3


def test_every_registered_pipeline_gets_an_equal_share_of_the_load(tmp_path, monkeypatch):
    from lakehouse.registry import load_registry
    from lakehouse.settings import Settings

    monkeypatch.setenv("LAKEHOUSE_CSV_INPUT", str(tmp_path / "csv"))
    settings = Settings()
    commands = producer_commands(settings, 4_000.0)
    assert set(commands) == set(load_registry(settings).names)
    modules = {name: command[2] for name, command in commands.items()}
    assert modules["market"] == "producers.market" and modules["csv"] == "producers.csv_files"
    for name in ("market", "activity", "orders"):
        assert "--rate=1000.0" in commands[name]  # the platform's own topics: no suffix
    assert "--trades-topic=stock-trades" in commands["market"]
    assert f"--folder={tmp_path / 'csv'}" in commands["csv"]
