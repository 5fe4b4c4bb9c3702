"""CSV drops generator: files of shop events dropped into the CSV pipeline's input folder.

Generation is pure (same seed, options and start -> byte-identical files, and the rows the
pipeline must make of them); writing is the I/O edge. The format is the contract with the
pipeline's parser (lakehouse/pipelines/csv): UTF-8, `\\n` line endings, the header COLUMNS,
then one event per line, written by Python's csv module (standard quoting).

Each row is clean, or (by its share) has exactly one defect the pipeline must quarantine
with a known reason: a missing value, a non-positive or malformed price, an unknown event
type, a malformed timestamp, or 5 or 7 fields. Messy ids (stray spaces, lower case) are no
defect: the pipeline trims and upper-cases them. A `--duplicate-files` share of the files
are exact copies of a recent file under another name, whose rows must load zero times more.

The clock is simulated: the first row is stamped `--start` (default: now), each new row
advances it by `--step-ms`. A file appears atomically: written as `.<name>.tmp` in the
folder (Spark's file source skips names starting with a dot) then renamed, or uploaded with
one put_object to an s3a://bucket/prefix folder. The last line on stdout is a JSON report.

    python -m producers.csv_files --files 0 --verbose
    python -m producers.csv_files --folder /tmp/drops --files 20 --interval 0 --seed 7 \\
        --start 2026-01-01T00:00:00Z --duplicate-files 0.1
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import random
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import typer

from lakehouse.pipelines.csv import (
    COLUMNS,
    EVENT_TYPES,
    MALFORMED_PRICE,
    MALFORMED_TIMESTAMP,
    MISSING_VALUE,
    NON_POSITIVE_PRICE,
    ROW_REASONS,
    UNKNOWN_EVENT_TYPE,
    WRONG_COLUMN_COUNT,
)
from producers.activity import WallClock, iso, parse_start, random_uuid, stop_on_signals

CLEAN = "clean"
MESSY_IDS = "messy_ids"  # accepted: the pipeline trims and upper-cases the ids
# The share option (a CsvDropSimulator field) of each kind but clean, in the order a row's
# one draw is compared against them.
SHARE_OF_KIND = {
    MISSING_VALUE: "missing",
    NON_POSITIVE_PRICE: "non_positive_price",
    UNKNOWN_EVENT_TYPE: "unknown_type",
    MALFORMED_PRICE: "malformed_price",
    MALFORMED_TIMESTAMP: "malformed_timestamp",
    WRONG_COLUMN_COUNT: "wrong_columns",
    MESSY_IDS: "messy_ids",
}
# The reasons it makes rows for (an overlong id, `value_too_long`, it never writes).
GENERATED_REASONS = tuple(kind for kind in SHARE_OF_KIND if kind in ROW_REASONS)
KINDS = (CLEAN, MESSY_IDS, *GENERATED_REASONS)
# In EVENT_TYPES' order: view, add_to_cart, purchase, remove_from_cart.
EVENT_TYPE_WEIGHTS = dict(zip(EVENT_TYPES, (0.6, 0.2, 0.12, 0.08), strict=True))
# Defective values, each wrong under any reasonable reading (never an alternative format).
UNKNOWN_TYPES = ("checkout", "wishlist", "click")
MALFORMED_PRICES = ("abc", "12.3.4", "$19.99", "ten")
MALFORMED_TIMESTAMPS = ("2026-13-45T25:61:00Z", "yesterday", "01/02/2026 10:00")
MIN_CENTS, MAX_CENTS = 100, 50_000  # product prices 1.00 .. 500.00
RECENT_FILES = 20  # a duplicate file copies one of the last this many original files
PRICE = COLUMNS.index("product_price")
USER, PRODUCT = COLUMNS.index("user_id"), COLUMNS.index("product_id")


@dataclass(frozen=True)
class ExpectedRow:
    """What the pipeline must make of one data row."""

    line_number: int  # 1-based line of the file: the header is line 1, data starts at 2
    kind: str  # one of KINDS: clean, messy_ids, or the quarantine reason
    reason: str | None  # the quarantine reason, None when accepted
    # Accepted rows: event_id, user_id, product_id, event_type, product_price (float, 2
    # decimals), event_time_ms (int epoch ms), ids trimmed and upper-cased.
    event: dict | None


@dataclass(frozen=True)
class GeneratedFile:
    name: str
    text: str
    rows: tuple[ExpectedRow, ...]
    copy_of: str | None = None  # a duplicate file: the name of the file it copies

    def kinds(self) -> Counter:
        return Counter(row.kind for row in self.rows)


def user_id(number: int, users: int) -> str:
    """1 -> U00001; wider when the pool needs more digits."""
    return f"U{number:0{max(5, len(str(users)))}d}"


def product_id(number: int, products: int) -> str:
    """1 -> P0001; wider when the pool needs more digits."""
    return f"P{number:0{max(4, len(str(products)))}d}"


def file_name(start_ms: int, seed: int, seq: int) -> str:
    """Sortable within a run; the start (to the ms) and the seed keep runs apart."""
    start = datetime.fromtimestamp(start_ms // 1000, UTC).strftime("%Y%m%dT%H%M%S")
    return f"events-{start}.{start_ms % 1000:03d}Z-s{seed}-{seq:05d}.csv"


def render(rows: Sequence[Sequence[str]]) -> str:
    """The file's text: the header, then the rows, with standard csv quoting."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def _messy(identifier: str, rng: random.Random) -> str:
    """The id lower-cased and/or padded with spaces; never the id itself."""
    style = rng.choice(("lower", "spaces", "both"))
    text = identifier if style == "spaces" else identifier.lower()
    if style != "lower":
        left = rng.randint(0, 2)
        text = " " * left + text + " " * rng.randint(0 if left else 1, 2)
    return text


def _with_defect(fields: list[str], kind: str, cents: int, rng: random.Random) -> list[str]:
    """The clean row's fields with the one defect of `kind` (messy ids count as one)."""
    fields = list(fields)
    if kind == MISSING_VALUE:
        fields[rng.randrange(len(fields))] = ""
    elif kind == NON_POSITIVE_PRICE:
        fields[PRICE] = rng.choice(("0.00", f"-{cents / 100:.2f}"))
    elif kind == UNKNOWN_EVENT_TYPE:
        fields[COLUMNS.index("event_type")] = rng.choice(UNKNOWN_TYPES)
    elif kind == MALFORMED_PRICE:
        fields[PRICE] = rng.choice(MALFORMED_PRICES)
    elif kind == MALFORMED_TIMESTAMP:
        fields[COLUMNS.index("event_timestamp")] = rng.choice(MALFORMED_TIMESTAMPS)
    elif kind == WRONG_COLUMN_COUNT:
        shape = rng.choice(("dropped", "trailing_comma", "decimal_comma"))
        if shape == "dropped":  # 5 fields
            del fields[rng.randrange(len(fields))]
        elif shape == "trailing_comma":  # 7 fields, the last empty
            fields.append("")
        else:  # 7 fields: the price written 12,50 without quotes
            fields[PRICE : PRICE + 1] = fields[PRICE].split(".")
    elif kind == MESSY_IDS:
        which = rng.choice(((USER,), (PRODUCT,), (USER, PRODUCT)))
        for index in which:
            fields[index] = _messy(fields[index], rng)
    return fields


@dataclass
class CsvDropSimulator:
    """The files of one run: `files(start_ms, step_ms)` yields them forever. Row shares are
    exclusive (one draw per row picks at most one kind), duplicate_files is per file."""

    rows_per_file: int = 200
    users: int = 500
    products: int = 200
    seed: int = 42
    missing: float = 0.01
    non_positive_price: float = 0.01
    unknown_type: float = 0.01
    malformed_price: float = 0.01
    malformed_timestamp: float = 0.01
    wrong_columns: float = 0.01
    messy_ids: float = 0.05
    duplicate_files: float = 0.0
    _shares: tuple[tuple[str, float], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The messages name the CLI options: the CLI shows them as they are.
        for name in ("rows_per_file", "users", "products"):
            if getattr(self, name) < 1:
                option = "rows" if name == "rows_per_file" else name
                raise ValueError(f"--{option} must be at least 1")
        for name in (*SHARE_OF_KIND.values(), "duplicate_files"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                option = name.replace("_", "-")
                raise ValueError(
                    f"--{option} is {value:g}, but a share must be between 0 and 1 "
                    f"(e.g. --{option} 0.01)"
                )
        self._shares = tuple((kind, getattr(self, name)) for kind, name in SHARE_OF_KIND.items())
        total = sum(share for _, share in self._shares)
        if total > 1.0 + 1e-9:
            options = ", ".join(f"--{name.replace('_', '-')}" for name in SHARE_OF_KIND.values())
            raise ValueError(
                f"the row shares ({options}) add up to {total:g}: lower some of them "
                "to make it 1 at most"
            )

    def _kind(self, rng: random.Random) -> str:
        draw = rng.random()
        for kind, share in self._shares:
            if draw < share:
                return kind
            draw -= share
        return CLEAN

    def files(self, start_ms: int, step_ms: int = 100) -> Iterator[GeneratedFile]:
        """Files forever: the n-th is named file_name(start_ms, seed, n). Every row of an
        original file takes the next tick of the clock and a new event id; a duplicate file
        repeats an earlier one's text and expected rows and takes neither.

        Separate random streams keep what does not have to change from changing: the rows
        depend on the seed only (the start moves their times), the event ids on the seed and
        the start (a feed restarted later with the same seed makes new events, which the
        pipeline would otherwise drop as already loaded), and which files are copies on a
        stream of their own (the originals do not depend on --duplicate-files)."""
        rng = random.Random(self.seed)
        ids = random.Random(f"csv-event-ids:{self.seed}:{start_ms}")
        copies = random.Random(f"csv-copies:{self.seed}")
        cents_of = [rng.randint(MIN_CENTS, MAX_CENTS) for _ in range(self.products)]
        types, weights = tuple(EVENT_TYPE_WEIGHTS), tuple(EVENT_TYPE_WEIGHTS.values())
        now = start_ms
        recent: deque[GeneratedFile] = deque(maxlen=RECENT_FILES)
        for seq in itertools.count(1):
            name = file_name(start_ms, self.seed, seq)
            if recent and copies.random() < self.duplicate_files:
                original = copies.choice(recent)
                yield GeneratedFile(name, original.text, original.rows, copy_of=original.name)
                continue
            lines: list[list[str]] = []
            expected: list[ExpectedRow] = []
            for line_number in range(2, self.rows_per_file + 2):
                kind = self._kind(rng)
                product = rng.randint(1, self.products)
                cents = cents_of[product - 1]
                event = {
                    "event_id": random_uuid(ids),
                    "user_id": user_id(rng.randint(1, self.users), self.users),
                    "product_id": product_id(product, self.products),
                    "event_type": rng.choices(types, weights)[0],
                    "product_price": cents / 100,
                    "event_time_ms": now,
                }
                clean = [
                    event["event_id"],
                    event["user_id"],
                    event["product_id"],
                    event["event_type"],
                    f"{cents / 100:.2f}",
                    iso(now),
                ]
                now += step_ms
                lines.append(_with_defect(clean, kind, cents, rng))
                accepted = kind in (CLEAN, MESSY_IDS)
                expected.append(
                    ExpectedRow(
                        line_number,
                        kind,
                        None if accepted else kind,
                        event if accepted else None,
                    )
                )
            generated = GeneratedFile(name, render(lines), tuple(expected))
            recent.append(generated)
            yield generated


def generate(
    files: int,
    rows_per_file: int = 200,
    *,
    seed: int = 42,
    start_ms: int,
    step_ms: int = 100,
    **options,
) -> list[GeneratedFile]:
    """The first `files` files the CLI writes with `--rows rows_per_file --seed seed --start
    start_ms --step-ms step_ms` and the same options (CsvDropSimulator's fields: users,
    products and the shares)."""
    simulator = CsvDropSimulator(rows_per_file=rows_per_file, seed=seed, **options)
    return list(itertools.islice(simulator.files(start_ms, step_ms), files))


def describe(generated: GeneratedFile) -> str:
    """One line per written file for --verbose."""
    if generated.copy_of:
        return f"{generated.name}: {len(generated.rows)} rows, a copy of {generated.copy_of}"
    kinds = generated.kinds()
    refused = sum(kinds[reason] for reason in GENERATED_REASONS)
    return (
        f"{generated.name}: {len(generated.rows)} rows, {kinds[CLEAN]} clean, "
        f"{kinds[MESSY_IDS]} with messy ids, {refused} bad"
    )


@dataclass
class DropReport:
    """What a run wrote. rows_by_kind counts the rows of original files (new events);
    a duplicate file's rows count in duplicate_rows only."""

    files: int = 0
    duplicate_files: int = 0
    rows: int = 0
    duplicate_rows: int = 0
    rows_by_kind: Counter = field(default_factory=Counter)

    def add(self, generated: GeneratedFile) -> None:
        self.files += 1
        self.rows += len(generated.rows)
        if generated.copy_of:
            self.duplicate_files += 1
            self.duplicate_rows += len(generated.rows)
        else:
            self.rows_by_kind.update(generated.kinds())

    def as_dict(
        self, *, folder: str, seed: int, start_ms: int, step_ms: int, seconds: float
    ) -> dict:
        """clock_end_ms: the time the next row would get (a later run's --start to carry on)."""
        new_rows = self.rows - self.duplicate_rows
        return {
            "folder": folder,
            "files": self.files,
            "duplicate_files": self.duplicate_files,
            "rows": self.rows,
            "rows_by_kind": {kind: self.rows_by_kind.get(kind, 0) for kind in KINDS},
            "duplicate_rows": self.duplicate_rows,
            "seed": seed,
            "start_ms": start_ms,
            "step_ms": step_ms,
            "clock_end_ms": start_ms + new_rows * step_ms,
            "seconds": round(seconds, 3),
        }


# ---- the I/O edge ---------------------------------------------------------------------


class FolderError(Exception):
    """One sentence: what is wrong with the output folder and what to do about it."""


Put = Callable[[str, bytes], None]  # writes one file, whole, under its name


def write_atomically(folder: Path, name: str, data: bytes) -> Path:
    """`folder/name` appears whole or not at all: written as `.name.tmp` beside it (a name
    Spark's file source never lists), then renamed over it."""
    final, temporary = folder / name, folder / f".{name}.tmp"
    try:
        temporary.write_bytes(data)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return final


def local_folder(path: Path) -> Put:
    """Creates the folder if missing and checks it takes a file."""
    if path.exists() and not path.is_dir():
        raise FolderError(f"{path} is a file, not a folder: pass a folder as --folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise FolderError(
            f"Cannot write files into {path} ({error.strerror or error}): pass a writable --folder."
        ) from None

    def put(name: str, data: bytes) -> None:
        try:
            write_atomically(path, name, data)
        except OSError as error:
            raise FolderError(
                f"Writing {name} into {path} failed ({error.strerror or error}): "
                "free some space or pass another --folder."
            ) from None

    return put


def s3_folder(uri: str) -> Put:
    """An s3a://bucket/prefix on the platform's S3: one put_object per file (atomic in S3)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from infra.s3 import s3_client
    from lakehouse.settings import load_settings

    bucket, _, prefix = uri.split("://", 1)[1].partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise FolderError(f"{uri} names no bucket: pass --folder s3a://BUCKET/PREFIX.")
    settings = load_settings()
    endpoint = settings.s3_endpoint
    client = s3_client(settings)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise FolderError(
                f"The bucket {bucket} does not exist on the S3 at {endpoint}: "
                "create it, or pass another --folder."
            ) from None
        raise FolderError(
            f"The S3 at {endpoint} refused access to the bucket {bucket} ({code}): check the "
            "S3 credentials in the settings."
        ) from None
    except BotoCoreError as error:
        raise FolderError(
            f"The S3 at {endpoint} is not reachable ({type(error).__name__}): "
            "run `make up` first, or pass a local --folder."
        ) from None

    def put(name: str, data: bytes) -> None:
        key = f"{prefix}/{name}" if prefix else name
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="text/csv")
        except (BotoCoreError, ClientError) as error:
            raise FolderError(
                f"Uploading {name} to {uri} failed ({type(error).__name__}): "
                "check that the S3 is up, then run again."
            ) from None

    return put


def open_folder(folder: str) -> Put:
    """The writer for a local folder or an s3a:// prefix; FolderError when it cannot take
    files."""
    if folder.startswith(("s3a://", "s3://")):
        return s3_folder(folder)
    return local_folder(Path(folder))


app = typer.Typer(add_completion=False)


def refuse(sentence: str) -> NoReturn:
    """A bad option: one sentence on stderr, exit 2, no usage box and no traceback."""
    typer.echo(sentence, err=True)
    raise typer.Exit(2)


@app.command()
def main(
    folder: str = typer.Option(
        "", help="a local folder or s3a://bucket/prefix [default: the csv_input setting]"
    ),
    files: int = typer.Option(0, help="files to write (0: until SIGINT/SIGTERM)"),
    rows: int = typer.Option(200, help="rows per file"),
    interval: float = typer.Option(5.0, help="seconds between files (0: no pause)"),
    seed: int = typer.Option(42),
    start: str = typer.Option(
        "", help="the first row's time, ISO-8601 UTC or epoch ms (empty: now)"
    ),
    step_ms: int = typer.Option(100, help="the clock's advance per row"),
    users: int = typer.Option(500, help="the pool of user ids"),
    products: int = typer.Option(200, help="the pool of product ids"),
    missing: float = typer.Option(0.01, help="rows with one empty field"),
    non_positive_price: float = typer.Option(0.01, help="rows priced 0.00 or negative"),
    unknown_type: float = typer.Option(0.01, help="rows with an unknown event type"),
    malformed_price: float = typer.Option(0.01, help="rows whose price is not a number"),
    malformed_timestamp: float = typer.Option(0.01, help="rows with an unreadable timestamp"),
    wrong_columns: float = typer.Option(0.01, help="rows with 5 or 7 fields"),
    messy_ids: float = typer.Option(0.05, help="rows with padded or lower-case ids (accepted)"),
    duplicate_files: float = typer.Option(0.0, help="files that copy an earlier file"),
    verbose: bool = typer.Option(False, help="print one line per file written to stderr"),
) -> None:
    """Write CSV files of shop events; print what was written as JSON (the last line)."""
    if files < 0:
        refuse(f"--files is {files}: pass a number of files, or 0 to run until stopped.")
    if interval < 0:
        refuse(f"--interval is {interval:g}: pass the seconds between files, 0 or more.")
    if step_ms < 1:
        refuse(f"--step-ms is {step_ms}: pass the clock's advance per row, 1 ms or more.")
    try:
        start_ms = parse_start(start) if start else WallClock().now
    except typer.BadParameter as error:
        refuse(f"--start {error.message}.")
    try:
        simulator = CsvDropSimulator(
            rows_per_file=rows,
            users=users,
            products=products,
            seed=seed,
            missing=missing,
            non_positive_price=non_positive_price,
            unknown_type=unknown_type,
            malformed_price=malformed_price,
            malformed_timestamp=malformed_timestamp,
            wrong_columns=wrong_columns,
            messy_ids=messy_ids,
            duplicate_files=duplicate_files,
        )
    except ValueError as error:
        refuse(f"Cannot generate that: {error}.")
    if not folder:
        from lakehouse.settings import load_settings

        folder = load_settings().csv_input_folder
    try:
        put = open_folder(folder)
    except FolderError as error:
        refuse(str(error))

    report = DropReport()
    started = time.monotonic()
    failed = False
    with stop_on_signals() as stop:
        try:
            for written, generated in enumerate(simulator.files(start_ms, step_ms), start=1):
                put(generated.name, generated.text.encode())
                report.add(generated)
                if verbose:
                    typer.echo(describe(generated), err=True)
                # A signal only sets `stop`: the run ends here, between two whole files.
                if written == files or stop.wait(interval):
                    break
        except FolderError as error:
            typer.echo(str(error), err=True)
            failed = True
        finally:
            summary = report.as_dict(
                folder=folder,
                seed=seed,
                start_ms=start_ms,
                step_ms=step_ms,
                seconds=time.monotonic() - started,
            )
            print(json.dumps(summary), flush=True)
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
