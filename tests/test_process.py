"""The supervisor with real processes: trees are stopped, stubborn ones killed."""

import sys
import time

import psutil

from lakehouse.process import ManagedProcess, cores_used

# A parent with a child; the child ignores SIGTERM, so only SIGKILL ends it.
STUBBORN_TREE = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def test_stop_ends_the_whole_tree_even_if_a_child_ignores_sigterm(tmp_path):
    managed = ManagedProcess("stubborn", tmp_path / "run", tmp_path / "logs")
    pid = managed.start([sys.executable, "-c", STUBBORN_TREE])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not managed.process().children():
        time.sleep(0.1)
    child = managed.process().children()[0]
    assert managed.pid == pid and managed.rss_bytes() > 0

    assert managed.stop(timeout_s=1.0) is True
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert managed.pid is None
    assert managed.stop(timeout_s=1.0) is False


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path):
    managed = ManagedProcess("ghost", tmp_path / "run", tmp_path / "logs")
    managed.run_dir.mkdir(parents=True)
    # Our own pid with a wrong start time: the pid file must not claim this process.
    managed.pid_file.write_text(f"{psutil.Process().pid} 12345.0\n")
    assert managed.process() is None
    assert managed.exited_early()


def test_a_stepped_clock_does_not_disown_a_running_process(tmp_path):
    managed = ManagedProcess("sleeper", tmp_path / "run", tmp_path / "logs")
    pid = managed.start([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _, created, since_boot = managed.pid_file.read_text().split()
        # As the file reads after the wall clock was stepped 35 s (measured here during a
        # test run): the recorded wall-clock start is off, the start after boot is not.
        managed.pid_file.write_text(f"{pid} {float(created) - 35} {since_boot}\n")
        assert managed.pid == pid
        # A recycled pid started at another moment after boot is still not ours.
        managed.pid_file.write_text(f"{pid} {created} {float(since_boot) - 35}\n")
        assert managed.process() is None
    finally:
        managed.pid_file.write_text(f"{pid} {created} {since_boot}\n")
        managed.stop(timeout_s=5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_log_tail_returns_the_last_lines(tmp_path):
    managed = ManagedProcess("echo", tmp_path / "run", tmp_path / "logs")
    managed.start([sys.executable, "-c", "for i in range(50): print('line', i)"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "line 49" not in managed.tail(3):
        time.sleep(0.1)
    assert managed.tail(3).splitlines() == ["line 47", "line 48", "line 49"]


def test_cores_used_counts_the_cpu_time_spent_inside_the_window():
    before = {1: 10.0, 2: 5.0}
    after = {1: 11.5, 3: 0.5}  # 2 ended in between; 3 started in between
    assert cores_used(before, after, 2.0) == (1.5 + 0.5) / 2
    assert cores_used({}, {}, 1.0) == 0.0


def test_a_busy_tree_is_measured_busier_than_a_sleeping_one(tmp_path):
    busy = ManagedProcess("busy", tmp_path / "run", tmp_path / "logs")
    idle = ManagedProcess("idle", tmp_path / "run", tmp_path / "logs")
    busy.start([sys.executable, "-c", "while True: pass"])
    idle.start([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        time.sleep(0.5)  # both interpreters started
        samples = busy.cpu_seconds_by_pid(), idle.cpu_seconds_by_pid()
        time.sleep(1.0)
        busy_cores = cores_used(samples[0], busy.cpu_seconds_by_pid(), 1.0)
        idle_cores = cores_used(samples[1], idle.cpu_seconds_by_pid(), 1.0)
    finally:
        busy.stop(timeout_s=5)
        idle.stop(timeout_s=5)
    assert idle_cores < 0.05 < busy_cores
