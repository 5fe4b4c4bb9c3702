"""A driver's lock on the real Postgres: one holder at a time, and a holder whose session is
cut (Postgres restarted, the connection killed) finds out and leaves, because the supervisor
will start another driver as soon as it sees no holder."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from lakehouse.drivers import DriverAlreadyRunning, connect, hold_driver_lock, lock_holder

pytestmark = [pytest.mark.services]


def test_a_second_holder_is_refused_and_the_lock_goes_with_the_holder(platform):
    job_key = f"lock-test-{uuid.uuid4().hex[:8]}"
    with hold_driver_lock(platform, job_key, on_lost=pytest.fail):
        with (
            pytest.raises(DriverAlreadyRunning, match="already running"),
            hold_driver_lock(platform, job_key),
        ):
            pass
        with connect(platform) as conn:
            assert lock_holder(conn, job_key) is not None
    with connect(platform) as conn:
        assert lock_holder(conn, job_key) is None


def test_a_holder_whose_session_is_cut_is_told_it_lost_the_lock(platform):
    job_key = f"lock-test-{uuid.uuid4().hex[:8]}"
    lost = threading.Event()
    reasons: list[str] = []

    def on_lost(reason: str) -> None:
        reasons.append(reason)
        lost.set()

    with (
        hold_driver_lock(platform, job_key, check_s=0.2, on_lost=on_lost),
        connect(platform) as conn,
    ):
        backend = lock_holder(conn, job_key)
        assert backend is not None
        assert not lost.wait(1.0), "the watcher called a held lock lost"
        conn.execute("SELECT pg_terminate_backend(%s)", (backend,))
        assert lost.wait(60), "the holder was not told its session was cut"
        assert lock_holder(conn, job_key) is None
    assert reasons and job_key in reasons[0]
    with psycopg.connect(platform.postgres_dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the platform's Postgres is fine
