"""Crash safety on the real PostgreSQL service with `jointnas worker` processes (real trials).

Slow (each worker imports torch and trains; about 30 s on an idle 2-core machine, 100 s loaded):
`test_budget.py` runs the same scenario with light workers in the quick suite.
"""

from __future__ import annotations

import collections
import signal
import time

import optuna
import pytest
from optuna.trial import TrialState

from jointnas.search.config import load_config
from jointnas.search.storage import open_storage
from jointnas.search.study import create_or_resume
from jointnas.search.worker import record_run

from ._distributed import PG_URL, make_config, service_or_skip, unique, worker

BUDGET = 5


def _trials(name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(PG_URL, heartbeat_s=None)).get_trials()


@pytest.mark.slow
def test_sigkill_one_of_three_workers_then_resume_reaches_exact_budget(tmp_path):
    service_or_skip(PG_URL)
    name = unique("crash")
    config = load_config(make_config(tmp_path, name, PG_URL))
    record_run(create_or_resume(config, PG_URL), BUDGET, None)
    fast = ("--no-artifacts", "--heartbeat", "1", "--grace", "3", "--n-trials", str(BUDGET))
    procs = [worker(PG_URL, name, *fast, index=i) for i in range(3)]
    victim = procs[0]
    try:
        killed_number = None
        deadline = time.time() + 90
        while killed_number is None and time.time() < deadline:
            for t in _trials(name):
                if t.state == TrialState.RUNNING and t.user_attrs.get("worker", "").endswith(f":{victim.pid}"):
                    victim.send_signal(signal.SIGKILL)
                    killed_number = t.number
                    break
            else:
                time.sleep(0.1)
        assert killed_number is not None, "the victim never ran a trial"
        victim.wait(timeout=10)
        # Resume: a fresh worker takes the killed worker's place.
        procs.append(worker(PG_URL, name, *fast, index=3))
        for p in procs[1:]:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    trials = _trials(name)
    states = collections.Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == BUDGET
    assert states[TrialState.RUNNING] == 0
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    killed = next(t for t in trials if t.number == killed_number)
    assert killed.state == TrialState.FAIL  # marked by a surviving worker after the grace period
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert killed.params.items() <= retries[0].params.items()  # what was sampled before the kill is kept
    # No COMPLETE trial is a second copy of another one (a retried trial counts once).
    origins = [t.system_attrs.get("failed_trial", t.number) for t in trials if t.state == TrialState.COMPLETE]
    assert len(origins) == len(set(origins))
    optuna.delete_study(study_name=name, storage=open_storage(PG_URL, heartbeat_s=None))
