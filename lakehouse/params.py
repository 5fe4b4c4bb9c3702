"""Reading a pipeline's driver parameters (--param <pipeline>.<name>=<value>): each refusal
is one sentence (ValueError) naming the parameter, so the driver exits 2 before Spark starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def refuse_unknown(pipeline: str, params: Mapping[str, str], known: Sequence[str]) -> None:
    unknown = set(params) - set(known)
    if unknown:
        takes = " and ".join((", ".join(known[:-1]), known[-1])) if len(known) > 1 else known[0]
        raise ValueError(
            f"the {pipeline} pipeline has no parameter {', '.join(sorted(unknown))} "
            f"(it takes {takes})"
        )


def whole_number(text: str, what: str, minimum: int = 1) -> int:
    try:
        number = int(text)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ValueError(f"{what} must be a whole number >= {minimum}, not {text!r}")
    return number


def duration_ms(text: str, what: str = "watermark delay") -> int:
    """'10 seconds', '1 minute', 'interval 2 hours' (what withWatermark takes) in
    milliseconds; ValueError in one sentence naming `what` otherwise."""
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
