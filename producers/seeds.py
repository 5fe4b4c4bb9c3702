"""The producers' seeds. A seed fixes a run's stream, its ids included: given, a run
repeats an earlier one (the tests and the chaos audits regenerate what was sent); not
given, each run takes a new one from the clock, so a feed started again later, such as the
demo feeds at each `make up`, sends new trade, event and order ids rather than the ids of
its last run, which the lake's uniqueness tests would then find twice."""

from __future__ import annotations

import time

SEED_HELP = "repeat the run with this seed (default: a new seed from the clock, in the summary)"


def run_seed(seed: int | None) -> int:
    """The seed a run uses: the one given, or the clock's seconds."""
    return int(time.time()) if seed is None else seed
