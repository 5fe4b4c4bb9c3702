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
