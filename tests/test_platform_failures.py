"""`up` fails with one clear sentence, and leaves nothing running behind."""

import socket
import subprocess
import sys

import psutil
import pytest

from control import platform
from infra.base import Service
from lakehouse.registry import load_registry
from lakehouse.settings import PROJECT_ROOT, Settings
from tests.conftest import TEST_ENV, run_cli


class SleepService(Service):
    """A real process that is healthy as soon as it runs."""

    name = "sleeper"

    def ports(self):
        return {}

    def command(self):
        return [sys.executable, "-c", "import time; time.sleep(600)"]

    def is_healthy(self):
        return self.process.process() is not None


class CrashingService(Service):
    name = "crasher"
    start_timeout_s = 10

    def ports(self):
        return {}

    def command(self):
        return [sys.executable, "-c", "print('cannot open data folder'); raise SystemExit(3)"]

    def is_healthy(self):
        return False


class BusyPortService(SleepService):
    name = "busy"

    def __init__(self, settings, port):
        super().__init__(settings)
        self._port = port

    def ports(self):
        return {"dashboard_port": self._port}


def test_failed_health_check_stops_what_was_started_and_shows_the_log(tmp_path):
    settings = Settings(home=tmp_path)
    first, crasher = SleepService(settings), CrashingService(settings)
    with pytest.raises(platform.PlatformError) as error:
        platform.up([first, crasher], log=lambda _: None)
    message = str(error.value)
    assert "crasher exited during start-up" in message
    assert "cannot open data folder" in message  # the log tail is shown
    assert first.process.pid is None  # what this call started was stopped


def test_port_in_use_names_service_port_and_setting(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = Settings(home=tmp_path)
        with pytest.raises(platform.PlatformError) as error:
            platform.up([BusyPortService(settings, port)], log=lambda _: None)
    message = str(error.value)
    assert f"port {port}" in message
    assert "busy cannot start" in message
    assert "LAKEHOUSE_DASHBOARD_PORT" in message


def test_cli_up_without_java_says_so_in_one_sentence(tmp_path):
    env = {"PATH": str(tmp_path), "LAKEHOUSE_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}
    result = run_cli("up", "--no-demo", env=env, timeout=120)
    assert result.returncode != 0
    assert "Java is not installed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not any(
        str(tmp_path) in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
    )


def test_cli_logs_of_unknown_service_is_a_clear_error():
    result = run_cli("logs", "no-such-service")
    assert result.returncode == 2
    assert "no service named 'no-such-service'" in result.stdout


def run_module(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m module args` against the test platform, as a user would type it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=TEST_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
        check=False,
    )


@pytest.mark.services
def test_producer_to_a_missing_topic_says_which_in_one_sentence(platform):
    result = run_module(
        "producers.market",
        *("--count", "10", "--rate", "0"),
        *("--trades-topic", "no-such-trades", "--reference-topic", "no-such-info"),
    )
    assert result.returncode == 2
    assert "Topic no-such-trades, no-such-info does not exist" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ["--job", "market_pipeline", "--param", "market.watermark=ten seconds"],
            "watermark delay 'ten seconds' is not a duration such as '10 seconds'",
        ),
        (["--job", "market_pipeline", "--param", "market.bucket=4"], "no parameter bucket"),
        (["--job", "market_pipeline", "--param", "buckets=4"], "is not pipeline.name=value"),
        (
            ["--job", "no_such_job"],
            "no streaming job 'no_such_job'; registered: "
            + ", ".join(sorted(load_registry().jobs)),
        ),
        (["--job", "market_pipeline", "--namespace", "Bad-NS"], "namespace 'Bad-NS' is not valid"),
    ],
)
def test_driver_refuses_a_wrong_argument_in_one_sentence(args, sentence):
    result = run_module("spark.driver", *args)
    assert result.returncode == 2
    assert sentence in " ".join(result.stdout.split())
    assert "Traceback" not in result.stdout + result.stderr
