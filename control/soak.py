"""A soak run of the running platform (`lakehouse soak`, `make soak`).

For `minutes`, every registered pipeline's live producer (the one its chaos audit runs, with
its duplicates, late and malformed records; for the CSV drops, files every few seconds) sends
an equal share of a steady `rate` of events, while
Airflow runs the Postgres sync on its schedule and the lake maintenance DAG is triggered at
the start and half way. Every `interval_s` the run samples:
- the RSS of every platform process group (each stream driver, each service, Airflow);
- per Kafka-reading query, the records behind: the topics' end offsets less the offsets of
  the query's newest committed batch (its checkpoint);
- per stateful query, its state store on disk (MB, and the files of its largest
  partition) and the state rows its last batch reported;
- the rows/s the Kafka-reading queries took in since the previous sample.
After the warm-up, three verdicts: RSS grew at most 10 % per group, the state stayed
bounded (its last third at most 25 % over its first third), and the lag did not grow (the
same rule, with a floor of 10 s of input so that a lag near zero does not count as growth).
The report is JSON (bench-results/soak.json) and a PNG plot (bench-results/soak.png).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean, median

from lakehouse.settings import PROJECT_ROOT, Settings

Log = Callable[[str], None]
SOAK_SEED = 17
RSS_GROWTH_LIMIT = 0.10
STATE_GROWTH_LIMIT = 0.25
LAG_GROWTH_LIMIT = 0.25
LAG_FLOOR_S = 10.0  # seconds of input: a lag below it is never "growing"


@dataclass
class Sample:
    t_s: float
    rss_mb: dict[str, float] = field(default_factory=dict)  # process group -> MB
    lag: dict[str, int] = field(default_factory=dict)  # query -> Kafka records behind
    state_mb: dict[str, float] = field(default_factory=dict)  # query -> state store MB
    state_files: dict[str, int] = field(default_factory=dict)  # query -> largest partition's
    state_rows: dict[str, int] = field(default_factory=dict)  # query -> rows in its state
    rows_per_s: float = 0.0


# ---- verdicts (pure) ----------------------------------------------------------------


def thirds(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last third of a series (at least one value each)."""
    size = max(len(values) // 3, 1)
    return mean(values[:size]), mean(values[-size:])


def rss_growth(series: list[float]) -> float | None:
    """Growth from the start of the window to its end, each the median of 3 samples (a
    garbage collection or a batch in flight moves one sample, not three)."""
    if len(series) < 2:
        return None
    first, last = median(series[:3]), median(series[-3:])
    return round(last / first - 1, 4) if first > 0 else None


def series(samples: list[dict], attribute: str) -> dict[str, list[float]]:
    """Per key of the samples' `attribute` dicts, its values in sample order (a sample
    without the key is skipped)."""
    out: dict[str, list[float]] = {}
    for sample in samples:
        for key, value in sample[attribute].items():
            out.setdefault(key, []).append(float(value))
    return out


def verdicts(samples: list[dict], warmup_s: float, rate: float) -> dict:
    """The three criteria over the samples (Sample as dicts) after the warm-up."""
    window = [s for s in samples if s["t_s"] >= warmup_s]
    rss = {k: rss_growth(v) for k, v in series(window, "rss_mb").items()}
    grown = {k: g for k, g in rss.items() if g is not None and g > RSS_GROWTH_LIMIT}
    state = {}
    for attribute in ("state_mb", "state_files", "state_rows"):
        for key, values in series(window, attribute).items():
            first, last = thirds(values)
            state[f"{key}.{attribute}"] = {
                "first_third": round(first, 2),
                "last_third": round(last, 2),
            }
    state_grew = {
        k: v
        for k, v in state.items()
        if v["first_third"] > 0 and v["last_third"] > (1 + STATE_GROWTH_LIMIT) * v["first_third"]
    }
    lag = {}
    floor = LAG_FLOOR_S * rate
    for key, values in series(window, "lag").items():
        first, last = thirds(values)
        lag[key] = {"first_third": round(first), "last_third": round(last)}
    lag_grew = {
        k: v
        for k, v in lag.items()
        if v["last_third"] > max((1 + LAG_GROWTH_LIMIT) * v["first_third"], floor)
    }
    return {
        "rss_growth": rss,
        "rss_held": not grown and bool(rss),
        "rss_grown": grown,
        "state": state,
        "state_bounded": not state_grew,
        "state_grown": state_grew,
        "lag": lag,
        "lag_held": not lag_grew and bool(lag),
        "lag_grown": lag_grew,
        "rows_per_s_mean": round(mean(s["rows_per_s"] for s in window), 1) if window else None,
    }


# ---- sampling (I/O) -----------------------------------------------------------------


def state_stores(checkpoint_root: Path) -> tuple[dict[str, float], dict[str, int]]:
    """Per stateful query: its state folder's MB, and the files of its largest partition."""
    sizes, files = {}, {}
    for state in sorted(checkpoint_root.glob("*/state")):
        query = state.parent.name
        partitions = [p for p in state.glob("*/*") if p.is_dir()]
        sizes[query] = round(
            sum(f.stat().st_size for f in state.rglob("*") if f.is_file()) / 2**20, 2
        )
        files[query] = max((sum(1 for _ in p.iterdir()) for p in partitions), default=0)
    return sizes, files


def progress_since(settings: Settings, queries: list[str], since: float) -> tuple[int, dict]:
    """Input rows of these queries' batches finished since `since` (epoch s), and every
    query's state rows as its newest batch reported. By when a batch was recorded, not when
    it began: under load a batch takes minutes."""
    import psycopg

    with psycopg.connect(settings.postgres_dsn()) as conn:
        (rows,) = conn.execute(
            "SELECT coalesce(sum(input_rows), 0) FROM stream_progress"
            " WHERE query_name = ANY(%s) AND recorded_at > to_timestamp(%s)",
            (queries, since),
        ).fetchone()
        state = conn.execute(
            """SELECT DISTINCT ON (query_name) query_name, state_rows FROM stream_progress
               WHERE state_rows IS NOT NULL AND recorded_at > to_timestamp(%s)
               ORDER BY query_name, recorded_at DESC""",
            (since - 3600,),
        ).fetchall()
    return int(rows), {q: int(n) for q, n in state}


def take_sample(settings: Settings, began: float, previous: float) -> Sample:
    from control.idle import platform_processes
    from spark.kafka_offsets import committed_kafka_offsets, kafka_lag

    now = time.time()
    sample = Sample(t_s=round(now - began, 1))
    for name, members in platform_processes(settings).items():
        rss = 0
        for proc in members:
            try:
                rss += proc.memory_info().rss
            except Exception:  # gone since it was listed
                continue
        sample.rss_mb[name] = round(rss / 2**20, 1)
    checkpoints = (p for p in settings.checkpoints_dir.iterdir() if p.is_dir())
    kafka_readers = committed_kafka_offsets(checkpoints)
    sample.lag = kafka_lag(settings, kafka_readers)
    sample.state_mb, sample.state_files = state_stores(settings.checkpoints_dir)
    rows, sample.state_rows = progress_since(settings, list(kafka_readers), previous)
    sample.rows_per_s = round(rows / max(now - previous, 1e-9), 1)
    return sample


def producer_commands(settings: Settings, rate: float) -> dict[str, list[str]]:
    """Per registered pipeline, the argv of its audit's live producer at an equal share of
    the rate, on the platform's own topics and folders; each runs until terminated."""
    from control.chaos import audited, load_audit
    from lakehouse.layout import Layout

    layout = Layout(settings)
    pipelines = audited(layout.registry)
    share = rate / len(pipelines)
    return {
        p.name: load_audit(p).producer_command(settings, layout, share, SOAK_SEED)
        for p in pipelines
    }


def producers(settings: Settings, rate: float) -> dict[str, subprocess.Popen]:
    return {
        name: subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for name, command in producer_commands(settings, rate).items()
    }


def trigger_maintenance(settings: Settings) -> str:
    """Trigger the lake maintenance DAG through Airflow's CLI; returns its run id."""
    from infra.airflow import airflow_cli
    from infra.base import ServiceError

    try:
        output = airflow_cli(
            settings,
            *("dags", "trigger", "lake_maintenance", "--output", "json"),
            *("--conf", json.dumps({"closed_after_hours": 0})),
        )
    except ServiceError as error:
        return f"not triggered: {error}"
    try:
        return json.loads(output.strip().splitlines()[-1])[0]["dag_run_id"]
    except (ValueError, IndexError, KeyError):
        return output.strip()[-200:]


def dag_runs(settings: Settings, dag_id: str, since: float) -> dict[str, int]:
    """The DAG's runs that began since `since` (epoch s), counted by state."""
    import psycopg

    with psycopg.connect(settings.postgres_dsn(settings.airflow_db)) as conn:
        rows = conn.execute(
            "SELECT state, count(*) FROM dag_run WHERE dag_id = %s"
            " AND start_date >= to_timestamp(%s) GROUP BY state",
            (dag_id, since),
        ).fetchall()
    return {str(state): int(n) for state, n in rows}


def measure(
    settings: Settings,
    *,
    minutes: float,
    rate: float,
    warmup_minutes: float,
    interval_s: float = 15.0,
    log: Log = print,
) -> dict:
    seconds = minutes * 60
    began = time.time()
    running = producers(settings, rate)
    maintenance = [trigger_maintenance(settings)]
    log(f"soak: {rate:.0f} events/s for {minutes:.0f} min; maintenance run {maintenance[0]}")
    samples: list[dict] = []
    previous = began
    try:
        while time.time() - began < seconds:
            time.sleep(interval_s)
            sample = take_sample(settings, began, previous)
            previous = began + sample.t_s
            samples.append(asdict(sample))
            if len(maintenance) == 1 and sample.t_s >= seconds / 2:
                maintenance.append(trigger_maintenance(settings))
            if len(samples) % 4 == 0:
                log(
                    f"soak: {sample.t_s / 60:.1f} min, RSS {sum(sample.rss_mb.values()) / 1024:.1f}"
                    f" GiB, lag {sum(sample.lag.values())}, {sample.rows_per_s:.0f} rows/s"
                )
    finally:
        sent = {}
        for name, producer in running.items():
            producer.terminate()
            out, _ = producer.communicate(timeout=120)
            lines = out.strip().splitlines()
            sent[name] = json.loads(lines[-1]) if lines else {"exit": producer.returncode}
    report = {
        "benchmark": "soak",
        "minutes": minutes,
        "rate": rate,
        "warmup_minutes": warmup_minutes,
        "interval_s": interval_s,
        "producers": sent,
        "maintenance_runs_triggered": maintenance,
        "airflow_runs": {
            dag: dag_runs(settings, dag, began) for dag in ("lake_maintenance", "postgres_sync")
        },
        **verdicts(samples, warmup_minutes * 60, rate),
        "samples": samples,
        "goal": {
            "rss_growth": RSS_GROWTH_LIMIT,
            "state_growth": STATE_GROWTH_LIMIT,
            "lag_growth": LAG_GROWTH_LIMIT,
        },
    }
    report["passed"] = report["rss_held"] and report["state_bounded"] and report["lag_held"]
    return report


# ---- the plot -----------------------------------------------------------------------


COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def plot(samples: list[dict], warmup_s: float, path: Path) -> None:
    """Three panels over time: RSS per process group (the eight largest), Kafka lag per
    query, rows/s taken in. Drawn with Pillow (the dashboard's dependency)."""
    from PIL import Image, ImageDraw

    width, panel, margin = 1200, 260, 70
    image = Image.new("RGB", (width, 3 * panel + 40), "white")
    draw = ImageDraw.Draw(image)
    times = [s["t_s"] / 60 for s in samples]
    rss = {
        k: v
        for k, v in sorted(
            series(samples, "rss_mb").items(), key=lambda kv: -max(kv[1], default=0)
        )[:8]
    }
    panels = [
        ("RSS MB per process group", rss),
        ("Kafka records behind per query", series(samples, "lag")),
        ("rows/s taken in", {"Kafka-reading queries": [s["rows_per_s"] for s in samples]}),
    ]
    end = max(times, default=1.0) or 1.0
    for index, (title, lines) in enumerate(panels):
        top = 20 + index * panel
        box = (margin, top + 20, width - 300, top + panel - 30)
        draw.rectangle(box, outline="black")
        draw.text((margin, top + 4), title, fill="black")
        peak = max((max(v) for v in lines.values() if v), default=1.0) or 1.0
        draw.text((4, box[1]), f"{peak:,.0f}", fill="black")
        draw.text((4, box[3] - 10), "0", fill="black")
        draw.text((box[2] - 40, box[3] + 4), f"{end:.0f} min", fill="black")
        warm_x = box[0] + (box[2] - box[0]) * min(warmup_s / 60 / end, 1.0)
        draw.line([(warm_x, box[1]), (warm_x, box[3])], fill="#bbbbbb")
        for n, (name, values) in enumerate(lines.items()):
            colour = COLOURS[n % len(COLOURS)]
            points = [
                (
                    box[0] + (box[2] - box[0]) * t / end,
                    box[3] - (box[3] - box[1]) * v / peak,
                )
                for t, v in zip(times[-len(values) :], values, strict=True)
            ]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            draw.text((box[2] + 10, box[1] + 14 * n), name[:45], fill=colour)
    image.save(path)
