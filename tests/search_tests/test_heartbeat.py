"""Leases on journal storages (`jointnas.search.heartbeat`): stale trials, one retry, reasons; reconnects."""

from __future__ import annotations

import time
import warnings

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from jointnas.search.attrs import TRIAL_WORKER
from jointnas.search.heartbeat import StorageLost, storage_lost
from jointnas.search.storage import open_storage

from ._distributed import REDIS_URL, service_or_skip, unique

pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize"),
]


GRACE = 3


def _wait_until_stale(storage, study_id: int) -> None:
    deadline = time.time() + 60
    while not storage._get_stale_trial_ids(study_id) and time.time() < deadline:
        time.sleep(0.2)


def _urls(tmp_path, kind: str) -> str:
    if kind == "redis":
        service_or_skip(REDIS_URL)
        return REDIS_URL
    return f"journal://{tmp_path / 'hb.log'}"


@pytest.mark.parametrize("kind", ["journal", "redis"])
def test_a_stale_lease_is_failed_once_with_its_reason_and_retried_once(tmp_path, kind):
    url, name = _urls(tmp_path, kind), unique("lease")
    owner = open_storage(url, heartbeat_s=1, grace_s=GRACE)  # the worker that will "die"
    study = optuna.create_study(study_name=name, storage=owner)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr(TRIAL_WORKER, "vm:4242")
    owner.record_heartbeat(trial._trial_id)
    b, c = (open_storage(url, heartbeat_s=1, grace_s=GRACE) for _ in range(2))  # two surviving workers
    sid = study._study_id
    assert b._get_stale_trial_ids(sid) == []  # renewed just now
    _wait_until_stale(b, sid)  # the owner renews no more
    # Both survivors see it stale at the same moment; the journal orders their FAIL writes.
    assert b._get_stale_trial_ids(sid) == c._get_stale_trial_ids(sid) == [trial._trial_id]
    assert b.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    with pytest.raises(UpdateFinishedTrialError):  # so Optuna's fail_stale_trials re-queues it only once
        c.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    failed = b.get_trial(trial._trial_id)
    assert failed.user_attrs["fail_reason"] == "worker vm:4242 stopped sending heartbeats"

    # Through Optuna's own path: a second stale trial is failed and re-queued with its parameters.
    second = study.ask()
    second.suggest_float("x", 0, 1)
    owner.record_heartbeat(second._trial_id)
    _wait_until_stale(b, sid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for storage in (b, c):
            optuna.storages.fail_stale_trials(optuna.load_study(study_name=name, storage=storage))
    trials = optuna.load_study(study_name=name, storage=b).get_trials()
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == second.number]
    assert [t.state for t in retries] == [TrialState.WAITING] and retries[0].params == second.params
    # The retry inherits the old lease; popped by a worker, its fresh start keeps it from being stale.
    popped = optuna.load_study(study_name=name, storage=c).ask()
    assert popped.number == retries[0].number and c._get_stale_trial_ids(sid) == []
    if kind == "redis":
        optuna.delete_study(study_name=name, storage=b)


def test_a_trial_that_never_renewed_a_lease_is_never_stale(tmp_path):
    storage = open_storage(f"journal://{tmp_path / 'n.log'}", heartbeat_s=1, grace_s=1)
    study = optuna.create_study(storage=storage)
    study.ask()  # a process with heartbeats off: no lease
    time.sleep(1.5)
    assert storage._get_stale_trial_ids(study._study_id) == []


class OperationalError(Exception):
    """Named like SQLAlchemy's: what a refused connection raises."""


def test_a_lost_connection_is_retried_for_the_reconnect_period_then_one_line(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'r.db'}", reconnect_s=1)
    calls = []

    def refused():
        calls.append(time.monotonic())
        raise OperationalError('connection to server at "db" failed: Connection refused')

    with pytest.raises(StorageLost, match=r"unreachable for 1 s \(connection to server at \"db\" failed"):
        storage._retry(refused)
    assert len(calls) >= 2  # retried with a pause before giving up
    assert str(storage_lost(storage)).startswith("storage sqlite:///")
    calls.clear()
    with pytest.raises(StorageLost):  # later calls fail at once: one wait per process
        storage._retry(refused)
    assert calls == []
    other = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    assert other._retry(lambda: 7) == 7 and storage_lost(other) is None
    with pytest.raises(ValueError):  # anything but a lost connection is not retried
        other._retry(lambda: (_ for _ in ()).throw(ValueError("bad data")))
