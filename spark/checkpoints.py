"""The identity of a streaming query's checkpoint, for sinks that record applied batches.

Batch ids restart at 0 with a new checkpoint, so a ledger keyed by the query's name alone
would take the new run's batches for the old run's and skip them. Spark writes a stable
query id into `<checkpoint>/metadata` when the query first starts, before its first batch:
keyed by (query name, that id), a ledger follows the checkpoint's life.
"""

from __future__ import annotations

import json
from pathlib import Path


def checkpoint_query_id(checkpoint: str) -> str:
    metadata = Path(checkpoint.removeprefix("file:")) / "metadata"
    return json.loads(metadata.read_text().splitlines()[0])["id"]


def sink_identity(query_name: str, checkpoint: str) -> str:
    """'<query name>:<checkpoint query id>': the name a ledger records a query's batches under."""
    return f"{query_name}:{checkpoint_query_id(checkpoint)}"


def batch_watermark_ms(checkpoint: str, batch_id: int) -> int:
    """The event-time watermark of a micro-batch, as its offset log records it (0 before the
    first one): what the stateful operators of the batch evict by."""
    path = Path(checkpoint.removeprefix("file:")) / "offsets" / str(batch_id)
    metadata = json.loads(path.read_text().splitlines()[1])
    return int(metadata.get("batchWatermarkMs", 0))


def _batch_ids(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.glob("[0-9]*") if p.name.isdigit())


def last_committed_batch(checkpoint: Path) -> int | None:
    committed = _batch_ids(checkpoint / "commits")
    return committed[-1] if committed else None


def batch_in_flight(checkpoint: Path) -> bool:
    """The query planned a batch (its offsets are logged) that it has not committed."""
    return bool(set(_batch_ids(checkpoint / "offsets")) - set(_batch_ids(checkpoint / "commits")))


# Delta's index for "every file of this version read" (far above any real file index).
_DELTA_END_INDEX = 2**62


def delta_source_version(offset_entry: str, table_id: str) -> int | None:
    """The first version of Delta table `table_id` not wholly read at an offset-log entry,
    or None when the query does not read that table. (The entry: a version line, the batch
    metadata, then one line per source, `-` for a source without an offset yet. A caught-up
    Delta source stands at (head + 1, index -1); one cut by a file limit at (v, file index).)"""
    for line in offset_entry.splitlines()[2:]:
        if line.startswith("{"):
            source = json.loads(line)
            if source.get("reservoirId") == table_id:
                version = int(source["reservoirVersion"])
                return version + 1 if source.get("index", -1) >= _DELTA_END_INDEX else version
    return None


def resume_version(checkpoint: Path, table_id: str) -> int | None:
    """The table version a query reads next from: the end of its last committed batch, or,
    before any commit, the snapshot its first planned batch reads. Every version below it
    has been read; files added from it on may still be needed."""
    committed = _batch_ids(checkpoint / "commits")
    planned = _batch_ids(checkpoint / "offsets")
    if committed:
        batch = committed[-1]
    elif planned:
        batch = planned[0]
    else:
        return None
    entry = checkpoint / "offsets" / str(batch)
    return delta_source_version(entry.read_text(), table_id) if entry.exists() else None


def delta_stream_readers(checkpoint_root: Path, table_id: str) -> dict[str, int]:
    """Query name -> resume version, for every checkpointed query under `checkpoint_root`
    that streams from the Delta table `table_id` (running or not)."""
    root = Path(checkpoint_root)
    if not root.is_dir():
        return {}
    readers = {}
    for checkpoint in sorted(p for p in root.iterdir() if p.is_dir()):
        version = resume_version(checkpoint, table_id)
        if version is not None:
            readers[checkpoint.name] = version
    return readers
