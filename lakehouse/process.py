"""Detached local processes with a pid file, a log file and a clean stop.

A pid file holds ``<pid> <create_time> <seconds after boot>`` so a recycled pid is never
mistaken for ours, and a stepped clock does not disown a process that is.
Every process starts in its own session; stop signals the whole process group and then
any descendant that escaped it, SIGTERM first, SIGKILL after a timeout.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class ManagedProcess:
    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def process(self) -> psutil.Process | None:
        """The live process recorded in the pid file, or None."""
        try:
            pid_text, *started = self.pid_file.read_text().split()
            proc = psutil.Process(int(pid_text))
            # Seconds after boot, when recorded: the wall-clock start time moves when the
            # clock is stepped (NTP, a resumed laptop), and a process would stop being ours.
            if len(started) == 2:
                recorded, now = float(started[1]), _since_boot(proc.create_time())
            else:
                (recorded,), now = map(float, started), proc.create_time()
            if abs(now - recorded) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    @property
    def pid(self) -> int | None:
        proc = self.process()
        return proc.pid if proc else None

    def start(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Dropping to another user must drop root's groups too, not only the uid.
        identity = (
            {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []} if user else {}
        )
        with self.log_file.open("ab") as log:
            log.write(
                f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(command)}\n".encode()
            )
            log.flush()
            proc = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                **identity,
            )
        created = psutil.Process(proc.pid).create_time()
        self.pid_file.write_text(f"{proc.pid} {created} {_since_boot(created)}\n")
        return proc.pid

    def exited_early(self) -> bool:
        """True when the pid file exists but its process is gone (crashed on start)."""
        return self.pid_file.exists() and self.process() is None

    def stop(self, timeout_s: float) -> bool:
        """Stop the process tree. Returns True if something was running."""
        proc = self.process()
        if proc is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        tree = [proc, *_children(proc)]
        _signal_group(proc.pid, signal.SIGTERM)
        for member in tree:
            _signal(member, signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=timeout_s)
        if alive:
            _signal_group(proc.pid, signal.SIGKILL)
            for member in alive:
                _signal(member, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=5)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tree(self) -> list[psutil.Process]:
        """The live process and all its descendants ([] when it is not running)."""
        proc = self.process()
        return [proc, *_children(proc)] if proc is not None else []

    def rss_bytes(self) -> int:
        total = 0
        for member in self.tree():
            with contextlib.suppress(psutil.Error):
                total += member.memory_info().rss
        return total

    def cpu_seconds_by_pid(self) -> dict[int, float]:
        """User + system CPU seconds of each process of the tree so far."""
        seconds = {}
        for member in self.tree():
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                seconds[member.pid] = times.user + times.system
        return seconds

    def tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return "(no log yet)"
        with self.log_file.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))


def _since_boot(created: float) -> float:
    """A process's start in seconds after boot. psutil derives both from the same boot time,
    so a clock step shifts both and leaves the difference alone."""
    return round(created - psutil.boot_time(), 2)


def cores_used(before: dict[int, float], after: dict[int, float], seconds: float) -> float:
    """The mean number of cores a process tree used between two `cpu_seconds_by_pid`
    samples `seconds` apart. A process that appeared in between counts whole (all its CPU
    time falls inside the window); one that ended in between is missed."""
    used = sum(max(cpu - before.get(pid, 0.0), 0.0) for pid, cpu in after.items())
    return used / seconds if seconds > 0 else 0.0


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _signal(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_bindable(host: str, port: int) -> bool:
    """True when we could listen on host:port (nothing else holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: lingering TIME_WAIT connections must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
