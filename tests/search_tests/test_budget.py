"""The global budget: claims, waiting on running trials, SIGKILL + resume on PostgreSQL, journal file, Redis.

Processes here run `_sleep_worker.py` (the real `run_trials`, a sleeping objective, no torch) so the
tests stay quick; `test_crash_resume.py` repeats the crash test with `jointnas worker` processes.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from jointnas.search.attrs import TRIAL_SURPLUS, TRIAL_WORKER
from jointnas.search.budget import _Guarded, run_trials
from jointnas.search.storage import open_storage

from ._distributed import PG_URL, REDIS_URL, service_or_skip, unique

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")

SLEEP_WORKER = Path(__file__).with_name("_sleep_worker.py")
PG_DRIVER_URL = PG_URL.replace("postgresql://", "postgresql+psycopg2://")


def _sleep_worker(
    url: str, study: str, n: int, trial_s: float, *hb: int, start_at: float | None = None
) -> subprocess.Popen[str]:
    """A `_sleep_worker.py` process; ``start_at`` (a `time.time()` value): its first trial waits until then."""
    cmd = [sys.executable, str(SLEEP_WORKER), url, study, str(n), str(trial_s), *map(str, hb)]
    env = {**os.environ, "JOINTNAS_START_AT": str(start_at)} if start_at is not None else None
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _x(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0, 1)


def _heartbeat_study(tmp_path: Path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_s=1, grace_s=60)
    return optuna.create_study(storage=storage, study_name=unique("budget"))


def test_a_trial_beyond_the_claimed_budget_is_surplus_and_never_runs(tmp_path):
    study = _heartbeat_study(tmp_path)
    first, second = study.ask(), study.ask()  # two workers passed the check at the same moment
    calls = []
    guarded = _Guarded(lambda t: calls.append(t.number) or 1.0, n_trials=1, exact=True, on_success=None)
    with pytest.raises(optuna.TrialPruned):
        guarded(second)
    assert calls == [] and second.user_attrs[TRIAL_SURPLUS] is True
    assert second.user_attrs[TRIAL_WORKER].endswith(f":{os.getpid()}")  # a surplus trial names its worker too
    assert guarded(first) == 1.0 and calls == [first.number]
    # Ctrl-C anywhere in a trial (here: in the claim check's read) leaves the reason on the trial.
    third = study.ask()

    def interrupted(trial):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _Guarded(interrupted, n_trials=5, exact=True, on_success=None)(third)
    assert third.user_attrs["fail_reason"] == "interrupted (Ctrl-C)"
    # Without heartbeats (journal storages) RUNNING trials are no claims: the second one runs.
    loose = _Guarded(lambda t: 2.0, n_trials=1, exact=False, on_success=None)
    assert loose(second) == 2.0


def test_workers_wait_for_running_trials_then_stop_at_exactly_the_budget(tmp_path):
    study = _heartbeat_study(tmp_path)
    elsewhere = study.ask()  # a trial another worker is running
    elsewhere.suggest_float("x", 0, 1)
    timer = threading.Timer(1.5, lambda: study.tell(elsewhere, 0.5))
    timer.start()
    calls = []
    complete = run_trials(study, lambda t: calls.append(t.number) or _x(t), n_trials=2, poll_s=0.1)
    timer.join()
    assert complete == 2 and len(calls) == 1  # ran one, then waited for the other worker's trial
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[1].user_attrs[TRIAL_WORKER].endswith(f":{os.getpid()}")

    # The other worker's trial fails instead: its slot goes back and this worker runs one more.
    study2 = _heartbeat_study(tmp_path)
    elsewhere = study2.ask()
    threading.Timer(1.0, lambda: study2.tell(elsewhere, state=TrialState.FAIL)).start()
    assert run_trials(study2, _x, n_trials=2, poll_s=0.1, max_trials=5) == 2
    states = collections.Counter(t.state for t in study2.trials)
    assert states == {TrialState.COMPLETE: 2, TrialState.FAIL: 1}


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_retry_queued_after_a_trial_started_keeps_its_place_in_the_budget(tmp_path, kind):
    """Optuna fails a stale trial, then re-queues it: a trial started in between is crowded out, not the retry."""
    url = f"sqlite:///{tmp_path / 'r.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'r.log'}"
    study = optuna.create_study(storage=open_storage(url, heartbeat_s=1, grace_s=60), study_name=unique("retry"))
    stale = study.ask()  # a dead worker's trial, failed by another worker that has not re-queued it yet
    stale.suggest_float("x", 0, 1)
    study.tell(stale, state=TrialState.FAIL)
    ran = []

    def objective(trial: optuna.Trial) -> float:
        if not ran:  # the other worker's re-queue lands while this trial runs
            optuna.storages.RetryFailedTrialCallback()(study, study._storage.get_trial(stale._trial_id))
        ran.append(trial.number)
        return _x(trial)

    assert run_trials(study, objective, n_trials=1, poll_s=0.1) == 1
    crowded, retry = study.trials[1], study.trials[2]
    assert ran == [1, 2]  # the retry was queued as trial 2 and ran after trial 1
    assert crowded.state == TrialState.PRUNED and crowded.user_attrs[TRIAL_SURPLUS] is True
    assert retry.state == TrialState.COMPLETE and retry.params == stale.params
    assert retry.system_attrs["failed_trial"] == stale.number


def _wait_for_running_trial_of(storage, study_name: str, pid: int, timeout: float) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for t in optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False):
            mine = t.user_attrs.get(TRIAL_WORKER, "").endswith(f":{pid}")
            if t.state == TrialState.RUNNING and mine and t.params:  # mid-trial: its parameters are drawn
                return t.number
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} never ran a trial")


def _kill_url(kind: str, tmp_path: Path) -> str:
    url = {"postgres": PG_DRIVER_URL, "journal": f"journal://{tmp_path / 'kill.log'}", "redis": REDIS_URL}[kind]
    if kind != "journal":
        service_or_skip(url)
    return url


@pytest.mark.parametrize("kind", ["postgres", "journal", "redis"])
def test_sigkill_mid_trial_then_resume_gives_exact_budget_no_duplicates(tmp_path, kind):
    """3 workers, one SIGKILLed mid-trial, a fresh one started: exact budget on every storage."""
    url = _kill_url(kind, tmp_path)
    name, budget = unique("kill"), 8
    storage = open_storage(url, heartbeat_s=None)
    optuna.create_study(study_name=name, storage=storage)
    procs = [_sleep_worker(url, name, budget, 1.0, 1, 5) for _ in range(3)]
    try:
        killed = _wait_for_running_trial_of(storage, name, procs[0].pid, timeout=60)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        procs.append(_sleep_worker(url, name, budget, 1.0, 1, 5))  # resume: a fresh worker
        for p in procs[1:]:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and out.strip() == f"done {budget}", err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    states = collections.Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == budget and states[TrialState.RUNNING] == 0
    assert len({t.number for t in trials}) == len(trials)
    victim = next(t for t in trials if t.number == killed)
    assert victim.state == TrialState.FAIL
    if kind != "postgres":  # the light worker opens PostgreSQL with Optuna's own class (no reasons)
        reason = f"worker {victim.user_attrs[TRIAL_WORKER]} stopped sending heartbeats"
        assert victim.user_attrs["fail_reason"] == reason
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert [t.state for t in retried] == [TrialState.COMPLETE]
    assert victim.params.items() <= retried[0].params.items()  # what it had sampled before the kill, retried once
    origins = [t.system_attrs.get("failed_trial", t.number) for t in trials if t.state == TrialState.COMPLETE]
    assert len(origins) == len(set(origins))  # a retried trial counts once
    optuna.delete_study(study_name=name, storage=storage)


@pytest.mark.parametrize("kind", ["journal", "redis"])
def test_two_processes_on_a_journal_storage_stop_at_exactly_the_budget(tmp_path, kind):
    url, name, budget = _kill_url(kind, tmp_path), unique("journal"), 6
    storage = open_storage(url)
    optuna.create_study(study_name=name, storage=storage)
    # Both start their first trial at the same moment (a loaded machine may take seconds to import optuna).
    start_at = time.time() + 10
    procs = [_sleep_worker(url, name, budget, 0.3, 1, 5, start_at=start_at) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    states = collections.Counter(t.state for t in trials)
    # Leases make RUNNING trials claims, as on RDB: exactly the budget, never a surplus COMPLETE.
    assert states[TrialState.COMPLETE] == budget and states[TrialState.RUNNING] == 0
    # Any other trial is surplus: pruned before it ran, and it names the worker that created it.
    surplus = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.PRUNED and t.user_attrs[TRIAL_SURPLUS] for t in surplus)
    assert {p.pid for p in procs} == {int(t.user_attrs[TRIAL_WORKER].rsplit(":", 1)[1]) for t in trials}
    assert len({t.number for t in trials}) == len(trials)
    completed_by = {t.user_attrs[TRIAL_WORKER] for t in trials if t.state == TrialState.COMPLETE}
    assert len(completed_by) == 2  # both processes ran trials
    assert all(isinstance(t.system_attrs["jointnas:lease"], float) for t in trials)  # each renewed its lease


def test_without_heartbeats_a_journal_counts_complete_trials_only(tmp_path):
    """Plain Optuna processes (no lease) on a journal: RUNNING trials cannot be claims, the budget is loose."""
    url, name, budget = f"journal://{tmp_path / 'loose.log'}", unique("loose"), 4
    optuna.create_study(study_name=name, storage=open_storage(url))
    start_at = time.time() + 10
    procs = [_sleep_worker(url, name, budget, 0.3, start_at=start_at) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    states = collections.Counter(t.state for t in trials)
    assert budget <= states[TrialState.COMPLETE] <= budget + 1 and states[TrialState.RUNNING] == 0
    assert not any("jointnas:lease" in t.system_attrs for t in trials)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_budget_counts_match_the_trials_on_sql_and_journal_storages(tmp_path, kind):
    """RDB storages count with one SQL aggregate, journal storages from the cache: same answer."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from jointnas.search.budget import budget_counts

    if kind == "sqlite":
        storage = open_storage(f"sqlite:///{tmp_path / 'c.db'}")
    else:
        storage = JournalStorage(JournalFileBackend(str(tmp_path / "c.log")))
    study = optuna.create_study(storage=storage)
    states = ["COMPLETE", "FAIL", "COMPLETE", "PRUNED", "RUNNING", "COMPLETE", "WAITING"]
    for s in states:
        if s == "WAITING":
            study.enqueue_trial({"x": 0.5})
            continue
        trial = study.ask()
        if s != "RUNNING":
            study.tell(trial, 0.0 if s == "COMPLETE" else None, state=TrialState[s])
    counts = budget_counts(study)
    assert {k: v for k, v in counts.items() if v} == dict(collections.Counter(states))
    below = budget_counts(study, below=3)  # trials 0, 1, 2
    assert {k: v for k, v in below.items() if v} == {"COMPLETE": 2, "FAIL": 1}


def test_a_workers_incremental_counter_follows_new_trials_and_state_changes(tmp_path):
    from jointnas.search.budget import TrialStates, budget_counts, state_counter

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'i.db'}"))
    counter = state_counter(study)
    assert isinstance(counter, TrialStates) and counter.counts()["COMPLETE"] == 0
    first, second = study.ask(), study.ask()
    study.tell(second, 1.0)
    counts = counter.counts()
    assert (counts["RUNNING"], counts["COMPLETE"]) == (1, 1)
    study.tell(first, 2.0)  # a row read before, not final then: read again
    study.tell(study.ask(), state=TrialState.FAIL)
    study.ask()
    counts = counter.counts()
    assert (counts["COMPLETE"], counts["FAIL"], counts["RUNNING"]) == (2, 1, 1)
    assert counts == budget_counts(study)  # a fresh counter agrees
    assert counter.counts(below=1) == {**{s.name: 0 for s in TrialState}, "COMPLETE": 1}
    assert counter.counts(below=3)["FAIL"] == 1 and counter.counts(below=3)["RUNNING"] == 0


def test_every_failed_trial_says_why(tmp_path):
    study = _heartbeat_study(tmp_path)

    def broken(trial):
        trial.suggest_float("x", 0, 1)
        raise RuntimeError("shape mismatch\nmore detail")

    assert run_trials(study, broken, n_trials=1, catch=(RuntimeError,)) == 0
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "RuntimeError: shape mismatch"


def test_a_worker_whose_trial_another_worker_failed_as_stale_goes_on(tmp_path, capsys):
    """A starved process whose heartbeats came late finds its trial FAILed by another worker: it says so
    and runs the next trial, instead of crashing on Optuna's "Cannot tell a FAIL trial"."""
    url = f"journal://{tmp_path / 'late.log'}"
    study = optuna.create_study(storage=open_storage(url, heartbeat_s=1, grace_s=60))
    other = open_storage(url, heartbeat_s=1, grace_s=60)  # the worker that judged the trial stale
    late = []

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        if not late:
            late.append(trial.number)
            other.set_trial_user_attr(trial._trial_id, "fail_reason", "worker vm:1 stopped sending heartbeats")
            other.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return x

    assert run_trials(study, objective, n_trials=2, max_trials=5) == 2
    states = collections.Counter(t.state for t in optuna.load_study(study_name=study.study_name, storage=other).trials)
    assert states == {TrialState.FAIL: 1, TrialState.COMPLETE: 2}
    assert "trial 0 was failed by another worker: worker vm:1 stopped sending heartbeats" in capsys.readouterr().err
