"""What waits in a pipeline's input folder (a local path or an s3a:// prefix): the files a
file stream has still to read. Names starting with "." or "_" are left out, as Spark's file
listing leaves them out (files being written, the archive and rejected folders).

A file that waits long while the stream runs is one the stream will not read: most often a
file dropped again under a name it has read before (the file source remembers paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from infra.s3 import s3_client
from lakehouse.settings import Settings


@dataclass(frozen=True)
class WaitingFile:
    name: str
    modified_at: datetime
    size: int


def _listed(name: str) -> bool:
    return not name.startswith((".", "_"))


def waiting_files(folder: str, settings: Settings) -> list[WaitingFile]:
    """The files directly in `folder`, oldest first; none when it does not exist."""
    if folder.startswith(("s3a://", "s3://")):
        found = _s3_files(folder, settings)
    else:
        root = Path(folder.removeprefix("file:"))
        found = [
            WaitingFile(p.name, datetime.fromtimestamp(p.stat().st_mtime, UTC), p.stat().st_size)
            for p in (root.iterdir() if root.is_dir() else ())
            if p.is_file() and _listed(p.name)
        ]
    return sorted(found, key=lambda f: (f.modified_at, f.name))


def _s3_files(folder: str, settings: Settings) -> list[WaitingFile]:
    bucket, _, prefix = folder.split("://", 1)[1].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    pages = (
        s3_client(settings)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    )
    return [
        WaitingFile(name, item["LastModified"], item["Size"])
        for page in pages
        for item in page.get("Contents", [])
        if (name := item["Key"][len(prefix) :]) and _listed(name)
    ]
