"""Crash safety with real `jointnas run` / `jointnas worker` processes on PostgreSQL, a journal file
and Redis; resumes that continue the sampler; concurrent first runs; a storage that goes away.

The kill tests are slow (each process imports torch and trains; about 30 s on an idle 2-core
machine, 100 s loaded): `test_budget.py` runs the same scenario with light workers in the quick suite.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from jointnas.search.config import load_config
from jointnas.search.storage import open_storage
from jointnas.search.study import create_or_resume
from jointnas.search.worker import record_run

from ._distributed import PG_URL, REDIS_URL, make_config, service_or_skip, unique, worker

BUDGET = 5


def _trials(name: str, url: str = PG_URL) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_s=None)).get_trials()


def _storage_url(kind: str, tmp_path) -> str:
    url = {"postgres": PG_URL, "journal": f"journal://{tmp_path / 'crash.log'}", "redis": REDIS_URL}[kind]
    service_or_skip(url)
    return url


def _run_cli(cfg, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", "from jointnas.search.cli import _entry; _entry()", "run", str(cfg), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgres", "journal", "redis"])
def test_run_plus_workers_one_sigkilled_then_resume_reaches_exact_budget(tmp_path, kind):
    """`jointnas run` and two joining `jointnas worker`s; one worker SIGKILLed mid-trial, a fresh
    worker started after it: exactly the budget COMPLETE on every storage."""
    url = _storage_url(kind, tmp_path)
    name = unique("crash")
    cfg = make_config(tmp_path, name, url)
    record_run(create_or_resume(load_config(cfg), url), BUDGET, None)  # the study the workers join
    fast = ("--heartbeat", "1", "--grace", "5", "--n-trials", str(BUDGET))
    procs = [_run_cli(cfg, *fast), *(worker(url, name, "--no-artifacts", *fast, index=i) for i in (1, 2))]
    victim = procs[1]
    try:
        killed_number = None
        deadline = time.time() + 120
        while killed_number is None and time.time() < deadline:
            for t in _trials(name, url):
                if t.state == TrialState.RUNNING and t.user_attrs.get("worker", "").endswith(f":{victim.pid}"):
                    victim.send_signal(signal.SIGKILL)
                    killed_number = t.number
                    break
            else:
                time.sleep(0.1)
        assert killed_number is not None, "the victim never ran a trial"
        victim.wait(timeout=10)
        # Resume: a fresh worker takes the killed worker's place.
        procs.append(worker(url, name, "--no-artifacts", *fast, index=3))
        for p in (procs[0], *procs[2:]):
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    trials = _trials(name, url)
    states = collections.Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == BUDGET
    assert states[TrialState.RUNNING] == 0
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    killed = next(t for t in trials if t.number == killed_number)
    assert killed.state == TrialState.FAIL  # marked by a surviving worker after the grace period
    assert killed.user_attrs["fail_reason"] == f"worker {killed.user_attrs['worker']} stopped sending heartbeats"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert killed.params.items() <= retries[0].params.items()  # what was sampled before the kill is kept
    # No COMPLETE trial is a second copy of another one (a retried trial counts once), and no
    # parameter set was drawn twice (each process seeds its sampler by index and study size).
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    origins = [t.system_attrs.get("failed_trial", t.number) for t in complete]
    assert len(origins) == len(set(origins))
    assert len({tuple(sorted(t.params.items())) for t in complete}) == BUDGET
    optuna.delete_study(study_name=name, storage=open_storage(url, heartbeat_s=None))


def test_a_resumed_study_continues_its_sampler_and_repeats_no_parameters(tmp_path, capsys):
    from jointnas.search.attrs import STUDY_SAMPLER_SEED
    from jointnas.search.cli import main

    url = f"sqlite:///{tmp_path / 'r.db'}"
    cfg = make_config(tmp_path, unique("resume"), url)
    assert main(["run", str(cfg), "--n-trials", "2"]) == 0
    assert main(["run", str(cfg), "--n-trials", "6"]) == 0
    capsys.readouterr()
    (summary,) = optuna.get_all_study_summaries(open_storage(url))
    study = optuna.load_study(study_name=summary.study_name, storage=open_storage(url))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 6  # the resume drew new candidates
    seeds = {k: v for k, v in study.user_attrs.items() if k.startswith(STUDY_SAMPLER_SEED)}
    # seed 0 + trials already in the study: 0 for the first run, 2 for the resume
    assert sorted((int(k.split(":")[2]), v) for k, v in seeds.items()) == [(0, 0), (2, 2)]


_RACER = """
import sys, time
from jointnas.search.config import load_config
from jointnas.search.study import create_or_resume
config = load_config(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
study = create_or_resume(config, sys.argv[2])
print(study.study_name, study.user_attrs["jointnas:config_hash"] == config.config_hash())
"""


def test_first_runs_started_together_on_one_sqlite_file_create_the_study_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    name = unique("race")
    cfg = make_config(tmp_path, name, url)
    start_at = str(time.time() + 8)  # after every process has imported jointnas
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(cfg), url, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.split() == [name, "True"], err[-2000:]
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(url))] == [name]


@pytest.mark.slow
def test_a_storage_that_drops_its_connections_mid_trial_ends_the_worker_in_one_line(tmp_path):
    """PostgreSQL behind a proxy that goes away mid-trial: bounded retries, exit 2, one line; the
    trial left RUNNING is failed (with its reason) and retried by the next worker after the grace period."""
    from ._distributed import TcpProxy

    service_or_skip(PG_URL)
    name = unique("drop")
    slow = make_config(tmp_path, name, PG_URL).read_text().replace("train_epochs = 1", "train_epochs = 2")
    (tmp_path / "slow.toml").write_text(slow)
    record_run(create_or_resume(load_config(tmp_path / "slow.toml"), PG_URL), 2, None)
    proxy = TcpProxy(("127.0.0.1", 5432))
    via_proxy = PG_URL.replace("5432", str(proxy.port))
    fast = ("--no-artifacts", "--heartbeat", "1", "--grace", "5")
    victim = worker(via_proxy, name, *fast, "--reconnect", "4")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(t.state == TrialState.RUNNING for t in _trials(name)):
            time.sleep(0.2)
        proxy.stop()  # the server "goes away" while the trial trains
        out, err = victim.communicate(timeout=180)
    finally:
        if victim.poll() is None:
            victim.kill()
    lines = err.strip().splitlines()
    assert victim.returncode == 2, err[-3000:]
    assert "Traceback" not in err
    assert lines[-1].startswith("error: storage postgresql://postgres@127.0.0.1:")
    assert "unreachable for 4 s" in lines[-1]
    (left,) = [t for t in _trials(name) if t.state == TrialState.RUNNING]  # nothing could mark it
    resumed = worker(PG_URL, name, *fast)
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err[-3000:]
    trials = {t.number: t for t in _trials(name)}
    assert trials[left.number].state == TrialState.FAIL
    reason = f"worker {left.user_attrs['worker']} stopped sending heartbeats"
    assert trials[left.number].user_attrs["fail_reason"] == reason
    states = collections.Counter(t.state for t in trials.values())
    assert states[TrialState.COMPLETE] == 2 and states[TrialState.RUNNING] == 0
    optuna.delete_study(study_name=name, storage=open_storage(PG_URL, heartbeat_s=None))
