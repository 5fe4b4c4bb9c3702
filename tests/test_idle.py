"""The idle bench's measurement (control/idle.py) on real processes: CPU of live processes,
of short-lived children no sample sees, and RSS."""

import sys

from control.idle import measure
from lakehouse.process import ManagedProcess

# Spawns a child that spins for 0.3 s, waits for it, sleeps, again: the children are
# reaped between samples, so only the parent's reaped-children times show them.
SHORT_LIVED_WORKERS = """
import subprocess, sys, time
while True:
    subprocess.run([sys.executable, "-c",
        "import time\\nend = time.time() + 0.3\\nwhile time.time() < end: pass"])
    time.sleep(0.2)
"""


def start(tmp_path, name: str, code: str) -> ManagedProcess:
    managed = ManagedProcess(name, tmp_path / "run", tmp_path / "logs")
    managed.start([sys.executable, "-c", code])
    return managed


def test_busy_short_lived_and_sleeping_groups_are_told_apart(tmp_path):
    groups = {
        "busy": start(tmp_path, "busy", "while True: pass"),
        "workers": start(tmp_path, "workers", SHORT_LIVED_WORKERS),
        "sleeping": start(tmp_path, "sleeping", "import time; time.sleep(600)"),
    }
    try:
        result = measure(lambda: {n: m.tree() for n, m in groups.items()}, 4.0, 1.0)
    finally:
        for managed in groups.values():
            managed.stop(timeout_s=5)
    cores = {name: g["cpu_cores"] for name, g in result["per_process_group"].items()}
    assert cores["sleeping"] < 0.05 < cores["workers"], cores
    assert cores["sleeping"] < 0.05 < cores["busy"], cores
    assert abs(result["cpu_cores"] - sum(cores.values())) < 0.01
    assert result["samples"] >= 4
    assert 0 < result["rss_gib"] <= result["rss_gib_max"]
