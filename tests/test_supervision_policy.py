"""The supervisor's policy as a pure function: no Postgres, no Spark."""

from datetime import UTC, datetime, timedelta

import pytest

from lakehouse.supervision import Action, DriverState, Policy, decide

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = Policy(stall_after_s=300, max_restarts=3, backoff_base_s=30, backoff_max_s=100)


def state(**changes) -> DriverState:
    base = dict(
        desired="running",
        alive=True,
        started_at=NOW - timedelta(minutes=20),
        oldest_heartbeat=NOW - timedelta(seconds=10),
        restarts=1,
        last_start_at=NOW - timedelta(minutes=20),
    )
    return DriverState(**{**base, **changes})


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("changes", "action"),
    [
        (
            dict(
                alive=False, started_at=None, oldest_heartbeat=None, restarts=0, last_start_at=None
            ),
            Action.START,
        ),
        ({}, Action.HEALTHY),
        (dict(oldest_heartbeat=ago(301)), Action.RESTART_STALLED),
        (dict(oldest_heartbeat=ago(301), restarts=3), Action.GIVE_UP),
        # A driver that started recently but has not reported yet is given stall_after_s.
        (dict(oldest_heartbeat=None, started_at=ago(200), last_start_at=ago(200)), Action.HEALTHY),
        (
            dict(oldest_heartbeat=None, started_at=ago(400), last_start_at=ago(400)),
            Action.RESTART_STALLED,
        ),
        (dict(alive=False, restarts=2, last_start_at=ago(59)), Action.WAIT_BACKOFF),
        (dict(alive=False, restarts=2, last_start_at=ago(61)), Action.START),
        (dict(alive=False, restarts=3), Action.GIVE_UP),
        (dict(desired="stopped"), Action.STOP),
        (dict(desired="stopped", alive=False), Action.STOPPED),
    ],
)
def test_decision(changes, action):
    assert decide(state(**changes), NOW, POLICY).action is action


def test_a_killed_driver_is_started_again_on_the_next_cycle_with_default_policy():
    # First crash after a normal start: one restart on record, last start long ago.
    killed = state(alive=False, restarts=1, last_start_at=ago(120))
    assert decide(killed, NOW, Policy()).action is Action.START


def test_a_long_healthy_run_forgets_earlier_restarts():
    assert decide(state(restarts=2), NOW, POLICY).reset_restarts
    recent = state(restarts=2, started_at=ago(60), last_start_at=ago(60))
    assert not decide(recent, NOW, POLICY).reset_restarts


def test_backoff_doubles_and_is_capped():
    assert [POLICY.backoff_s(n) for n in range(5)] == [0, 30, 60, 100, 100]


def test_a_driver_that_committed_batches_before_it_died_restarts_without_backoff():
    # Crashed seconds after its third start, but it had committed batches since that start:
    # it had recovered, so its earlier crashes stop counting.
    recovered = state(alive=False, restarts=3, last_start_at=ago(5), committed_since_start=True)
    decision = decide(recovered, NOW, POLICY)
    assert decision.action is Action.START and decision.reset_restarts
    # One that died before its first batch keeps backing off, then gives up.
    failing = state(alive=False, restarts=2, last_start_at=ago(5))
    assert decide(failing, NOW, POLICY).action is Action.WAIT_BACKOFF
    assert decide(state(alive=False, restarts=3), NOW, POLICY).action is Action.GIVE_UP
