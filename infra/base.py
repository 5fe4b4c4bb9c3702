"""What every embedded service launcher provides.

A launcher knows how to prepare its data folder once, the command that runs it in the
foreground, how to tell it is healthy, and what to set up after it is (topics, bucket,
roles). Starting, stopping and supervising is shared (control.platform).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping

from lakehouse.process import ManagedProcess
from lakehouse.settings import Settings


class ServiceError(RuntimeError):
    """A service could not be prepared or set up; the message says what to do."""


class Service(ABC):
    #: short name used for pid/log files and in `lakehouse logs NAME`
    name: str
    #: seconds `up` waits for the health check before giving up
    start_timeout_s: float = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = ManagedProcess(self.name, settings.run_dir, settings.logs_dir)

    @property
    def data_dir(self):
        return self.settings.data_dir / self.name

    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Ports the service listens on, keyed by the setting that controls each."""

    @abstractmethod
    def command(self) -> list[str]:
        """The foreground command; the supervisor detaches and logs it."""

    @abstractmethod
    def is_healthy(self) -> bool:
        """A real request against the service (not only "the port is open")."""

    def url(self) -> str:
        port = next(iter(self.ports().values()))
        return f"{self.settings.bind_host}:{port}"

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def run_as_user(self) -> str | None:
        return None

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """One-time initialisation of the data folder; must be idempotent."""

    def after_start(self) -> None:  # noqa: B027 - optional hook
        """Set-up that needs the running service; must be idempotent."""

    def extra_status(self) -> Mapping[str, str]:
        return {}
