"""The demo feeds `make up` starts: the market, web activity and orders simulators at a
gentle rate, and CSV files dropped into the CSV pipeline's input folder."""

from __future__ import annotations

import sys
import time

from infra.base import Service
from lakehouse.settings import PROJECT_ROOT


class DemoFeedService(Service):
    name = "demo-feed"
    start_timeout_s = 20.0
    events_per_second = 20

    def ports(self) -> dict[str, int]:
        return {}

    def url(self) -> str:
        return f"kafka://{self.settings.kafka_bootstrap}/stock-trades"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "producers.market", "--rate", str(self.events_per_second)]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["PYTHONPATH"] = str(PROJECT_ROOT)
        return env

    def is_healthy(self) -> bool:
        # No port to ask: still alive a few seconds after start means it reached Kafka
        # (it exits with a clear message when the broker is unreachable).
        proc = self.process.process()
        return proc is not None and time.time() - proc.create_time() > 3


class ActivityDemoFeedService(DemoFeedService):
    """Web activity: a few hundred users in sessions, 5 % of events 3 minutes late."""

    name = "activity-feed"
    events_per_second = 10

    def url(self) -> str:
        return f"kafka://{self.settings.kafka_bootstrap}/user_activity"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "producers.activity",
            "--rate",
            str(self.events_per_second),
            "--users",
            "300",
        ]


class OrdersDemoFeedService(DemoFeedService):
    """Orders and payments: a fifth of payments before their order, some never matched,
    cancelled or refunded, 2 % of events late."""

    name = "orders-feed"
    events_per_second = 10

    def url(self) -> str:
        return f"kafka://{self.settings.kafka_bootstrap}/orders,payments"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "producers.orders", "--rate", str(self.events_per_second)]


class CsvDemoFeedService(DemoFeedService):
    """CSV drops: a file of 200 shop events every 20 seconds, some rows bad, now and then a
    file dropped twice under another name."""

    name = "csv-feed"

    def url(self) -> str:
        return self.settings.csv_input_folder

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "producers.csv_files",
            "--files",
            "0",
            "--interval",
            "20",
            "--duplicate-files",
            "0.05",
        ]
