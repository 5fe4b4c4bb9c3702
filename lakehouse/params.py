"""Durations as Spark's withWatermark takes them ('10 seconds', '2 minutes'), in ms."""

from __future__ import annotations


def duration_ms(text: str, what: str = "watermark delay") -> int:
    """'10 seconds', '1 minute', 'interval 2 hours' in milliseconds; ValueError in one
    sentence naming `what` otherwise."""
    import pandas as pd

    cleaned = text.strip().lower().removeprefix("interval").strip()
    try:
        duration = (
            pd.Timedelta(cleaned) if cleaned[:1].isdigit() and cleaned[-1:].isalpha() else None
        )
    except ValueError:
        duration = None
    if duration is None or pd.isna(duration) or duration < pd.Timedelta(0):
        raise ValueError(f"{what} {text!r} is not a duration such as '10 seconds' or '1 minute'")
    return int(duration // pd.Timedelta(milliseconds=1))
