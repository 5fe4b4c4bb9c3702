"""Streamlit serving dashboard/app.py, headless, bound to loopback."""

from __future__ import annotations

import urllib.request

from infra.base import Service
from lakehouse.settings import PROJECT_ROOT


class DashboardService(Service):
    name = "dashboard"
    start_timeout_s = 45.0

    def ports(self) -> dict[str, int]:
        return {"dashboard_port": self.settings.dashboard_port}

    def url(self) -> str:
        return self.settings.dashboard_url

    def command(self) -> list[str]:
        s = self.settings
        return [
            str(s.venv_bin / "streamlit"),
            "run",
            str(PROJECT_ROOT / "dashboard" / "app.py"),
            "--server.headless=true",
            f"--server.address={s.bind_host}",
            f"--server.port={s.dashboard_port}",
            "--browser.gatherUsageStats=false",
            "--server.fileWatcherType=none",
        ]

    def is_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url()}/_stcore/health", timeout=3) as response:
                return response.status == 200
        except OSError:
            return False
