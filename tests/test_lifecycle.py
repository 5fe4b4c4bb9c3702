"""`up` is idempotent, `status --json` reports every service healthy, `down` leaves nothing."""

import json

import psutil
import pytest

from control import platform as lakehouse_platform
from lakehouse.process import port_bindable
from tests.conftest import PLATFORM_SERVICES, run_cli

pytestmark = [pytest.mark.services, pytest.mark.lifecycle]


def test_up_status_down(platform):
    status = json.loads(run_cli("status", "--json").stdout)
    rows = {row["service"]: row for row in status["services"]}
    expected = PLATFORM_SERVICES
    for name in expected:
        assert rows[name]["healthy"], f"{name} is not healthy: {rows[name]}"
        assert rows[name]["rss_mb"] > 0
    assert not rows["demo-feed"]["running"]  # started with --no-demo
    pids = {name: rows[name]["pid"] for name in expected}
    assert status["total_rss_mb"] < 6 * 1024, "idle platform above 6 GiB"
    assert status["total_cpu_cores"] == pytest.approx(
        sum(row["cpu_cores"] for row in status["services"]), abs=0.05
    )

    again = run_cli("up", "--no-demo", "--spark-cluster")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    after = {
        row["service"]: row["pid"]
        for row in json.loads(run_cli("status", "--json").stdout)["services"]
    }
    assert {name: after[name] for name in expected} == pids  # nothing started twice

    stopped = run_cli("down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, (
            name
        )
    for service in lakehouse_platform.all_services(platform):
        for port in service.ports().values():
            assert port_bindable(platform.bind_host, port), (
                f"port {port} of {service.name} still held"
            )
    final = json.loads(run_cli("status", "--json").stdout)
    assert not any(row["running"] for row in final["services"])
