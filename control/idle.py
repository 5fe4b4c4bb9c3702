"""What the running platform costs while it idles along with its demo feeds: the mean CPU
cores and RSS of every platform process, stream drivers and Airflow's workers included
(`lakehouse bench idle`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from lakehouse.settings import Settings


def platform_processes(settings: Settings) -> dict[str, list[psutil.Process]]:
    """Group name -> its live processes: each running stream driver's process group, then
    each service's process tree. A process is counted in the first group that has it."""
    from control import platform
    from lakehouse import drivers

    groups: dict[str, list[psutil.Process]] = {}
    with drivers.connect(settings) as conn:
        running = [
            (job_key, pgid)
            for job_key, pgid in conn.execute(
                "SELECT job_key, pgid FROM stream_drivers WHERE pgid IS NOT NULL"
            ).fetchall()
            if drivers.lock_holder(conn, job_key) is not None
        ]
    by_group: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter():
        try:
            by_group.setdefault(os.getpgid(proc.pid), []).append(proc)
        except (psutil.Error, ProcessLookupError):
            continue
    for job_key, pgid in running:
        if by_group.get(pgid):
            groups[f"driver {job_key}"] = by_group[pgid]
    for service in platform.all_services(settings):
        members = service.process.tree()
        if members:
            groups[service.name] = members
    seen: set[int] = set()
    for name, members in groups.items():
        groups[name] = [p for p in members if p.pid not in seen]
        seen.update(p.pid for p in groups[name])
    return groups


@dataclass
class Usage:
    """CPU seconds and RSS samples of one group over the measurement."""

    cpu_s: float = 0.0
    rss_bytes: list[int] = field(default_factory=list)


def measure(
    discover: Callable[[], dict[str, list[psutil.Process]]],
    seconds: float,
    interval_s: float,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Sample every `interval_s` for `seconds` each group's CPU time and RSS.

    A process's CPU time includes the children it has reaped, so short-lived workers
    (Airflow's task processes) are counted though no sample sees them alive. A process born
    since the last sample counts whole; one that was there before counts from the first
    sample that saw it; one that was sampled and then reaped by a sampled parent has its
    sampled part taken back (the parent's count now holds all of it)."""
    usage: dict[str, Usage] = {}
    seen: dict[int, tuple[float, int, str]] = {}  # pid -> (cpu s, parent pid, group)
    total_rss: list[int] = []
    started = previous = time.time()
    samples = 0
    while True:
        now = time.time()
        current: dict[int, tuple[float, int, str]] = {}
        total_rss.append(0)
        for name, members in discover().items():
            group = usage.setdefault(name, Usage())
            rss = 0
            for proc in members:
                try:
                    with proc.oneshot():
                        times, memory = proc.cpu_times(), proc.memory_info()
                        born, parent = proc.create_time(), proc.ppid()
                except psutil.Error:
                    continue
                cpu = times.user + times.system + times.children_user + times.children_system
                if proc.pid in seen:
                    group.cpu_s += max(cpu - seen[proc.pid][0], 0.0)
                elif samples and born > previous:
                    group.cpu_s += cpu
                current[proc.pid] = (cpu, parent, name)
                rss += memory.rss
            group.rss_bytes.append(rss)
            total_rss[-1] += rss
        for pid, (cpu, parent, name) in seen.items():
            if pid not in current and parent in current:
                usage[name].cpu_s -= cpu
        seen = current
        samples += 1
        previous = now
        elapsed = now - started
        if elapsed >= seconds:
            break
        if samples % max(int(60 / interval_s), 1) == 0:
            log(f"idle bench: {elapsed:.0f} of {seconds:.0f} s")
        time.sleep(min(interval_s, max(seconds - elapsed, 0.1)))
    elapsed = max(previous - started, 1e-9)
    per_group = {
        name: {
            "cpu_cores": round(max(u.cpu_s, 0.0) / elapsed, 3),
            "rss_gib": round(sum(u.rss_bytes) / len(u.rss_bytes) / 2**30, 3),
        }
        for name, u in sorted(usage.items())
    }
    return {
        "seconds": round(elapsed, 1),
        "samples": samples,
        "cpu_cores": round(max(sum(u.cpu_s for u in usage.values()), 0.0) / elapsed, 3),
        "rss_gib": round(sum(total_rss) / len(total_rss) / 2**30, 3),
        "rss_gib_max": round(max(total_rss) / 2**30, 3),
        "per_process_group": per_group,
    }
