"""`jointnas worker` joins a study from its stored config; refuses what it cannot reproduce; artifacts."""

from __future__ import annotations

import collections
import json
import sys

import numpy as np
import onnxruntime as ort
import optuna
import pytest
from optuna.trial import TrialState

from jointnas.search.artifacts import open_artifact_store
from jointnas.search.cli import main
from jointnas.search.config import load_config
from jointnas.search.storage import open_storage
from jointnas.search.study import create_or_resume
from jointnas.search.worker import record_run

from ._distributed import make_config, unique

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")


def _study(tmp_path, n_trials: int | None = 1):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    name = unique("worker")
    config = load_config(make_config(tmp_path, name, None))
    study = create_or_resume(config, url)
    if n_trials is not None:
        record_run(study, n_trials, None)
    return url, name, study


def _worker(capsys, *argv: str) -> tuple[int, str]:
    code = main(["worker", *argv])
    return code, capsys.readouterr().err


def test_worker_refuses_missing_study_other_config_version_and_other_code_version(tmp_path, capsys):
    url, name, study = _study(tmp_path)
    code, err = _worker(capsys, "--storage", url, "--study-name", "nope")
    assert code == 2 and f"study 'nope' does not exist in this storage; existing: {name}" in err

    code, err = _worker(capsys, "--study-name", name)
    assert code == 2 and "no storage given" in err

    study.set_user_attr("jointnas:config_hash", "0" * 64)  # made by another config version
    code, err = _worker(capsys, "--storage", url, "--study-name", name)
    assert code == 2 and "made by another config version" in err and "Traceback" not in err

    (tmp_path / "b").mkdir()
    url2, name2, study2 = _study(tmp_path / "b")
    study2.set_user_attr("jointnas:versions", {"jointnas": "0.0.1"})
    code, err = _worker(capsys, "--storage", url2, "--study-name", name2)
    assert code == 2 and "was made by jointnas 0.0.1" in err

    study2.set_user_attr("jointnas:config", {**study2.user_attrs["jointnas:config"], "gizmo": 1})
    study2.set_user_attr("jointnas:versions", study.user_attrs["jointnas:versions"])
    code, err = _worker(capsys, "--storage", url2, "--study-name", name2)
    assert code == 2 and "unknown key 'gizmo'" in err and "another config version" in err

    optuna.create_study(study_name="foreign", storage=open_storage(url))
    code, err = _worker(capsys, "--storage", url, "--study-name", "foreign")
    assert code == 2 and "was not made by jointnas" in err
    assert all(len(s.trials) == 0 for s in (study, study2))  # nothing ran


def test_worker_without_stored_budget_needs_n_trials(tmp_path, capsys):
    url, name, _ = _study(tmp_path, n_trials=None)
    code, err = _worker(capsys, "--storage", url, "--study-name", name)
    assert code == 2 and "pass --n-trials N" in err


def test_worker_runs_stored_config_and_uploads_onnx_and_summary(tmp_path, capsys):
    url, name, _ = _study(tmp_path, n_trials=1)
    art = tmp_path / "art"
    code, err = _worker(capsys, "--storage", url, "--study-name", name, "--artifact-dir", str(art))
    assert code == 0, err
    assert "1/1 COMPLETE" in err
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE
    ids = trial.user_attrs["artifacts"]
    assert "artifact_error" not in trial.user_attrs
    metas = {
        json.loads(v)["filename"]: json.loads(v) for k, v in trial.system_attrs.items() if k.startswith("artifacts:")
    }
    assert set(metas) == {"trial-00000.pt", "trial-00000.onnx", "trial-00000.json"}
    import torch

    stored = torch.load(art / ids["model"], weights_only=True)
    assert json.loads(json.dumps(stored["candidate"])) == trial.user_attrs["candidate"]
    assert stored["class_labels"] == [str(i) for i in range(10)] and stored["teacher"]["state_dict"]
    summary = json.loads((art / ids["summary"]).read_text())
    assert summary["number"] == 0 and summary["values"] == dict(zip(study.metric_names, trial.values, strict=True))
    assert summary["user_attrs"]["flash_bytes"] == trial.user_attrs["flash_bytes"]
    session = ort.InferenceSession(str(art / ids["onnx"]), providers=["CPUExecutionProvider"])
    x = np.zeros((1, *session.get_inputs()[0].shape[1:]), dtype=np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (1, 10)
    # A second worker on the finished budget does nothing.
    code, err = _worker(capsys, "--storage", url, "--study-name", name, "--no-artifacts")
    assert code == 0 and len(optuna.load_study(study_name=name, storage=open_storage(url)).trials) == 1


def test_artifact_store_refuses_paths_outside_it(tmp_path):
    store = open_artifact_store(tmp_path / "store")
    (tmp_path / "secret.txt").write_text("x")
    for bad in ("../secret.txt", str(tmp_path / "secret.txt"), "a/../../secret.txt"):
        with pytest.raises(ValueError, match="Invalid artifact_id"):
            store.open_reader(bad)


@pytest.mark.slow
def test_run_with_two_workers_on_a_journal_file(tmp_path, capsys):
    name = unique("jw")
    cfg = make_config(tmp_path, name, f"journal://{tmp_path / 'study.log'}")
    assert main(["run", str(cfg), "--workers", "2", "--n-trials", "3", "--json"]) == 0
    study = optuna.load_study(study_name=name, storage=open_storage(f"journal://{tmp_path / 'study.log'}"))
    states = collections.Counter(t.state for t in study.trials)
    assert states[TrialState.COMPLETE] == 3 and states[TrialState.RUNNING] == 0  # exact: leases on journals
    assert len({t.user_attrs.get("worker") for t in study.trials}) == 2
    assert all("onnx" in t.user_attrs["artifacts"] for t in study.trials if t.state == TrialState.COMPLETE)


@pytest.mark.slow
def test_ctrl_c_on_run_with_workers_marks_their_trials_and_exits_130(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    name = unique("int")
    url = f"journal://{tmp_path / 'study.log'}"
    slow = make_config(tmp_path, name, url).read_text().replace("train_epochs = 1", "train_epochs = 400")
    cfg = tmp_path / "slow.toml"
    cfg.write_text(slow)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jointnas.search.cli", "run", str(cfg), "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 180
    running = 0
    while time.time() < deadline and running < 2:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(url))
            running = sum(t.state == TrialState.RUNNING for t in study.trials)
        except Exception:  # the study or its journal file may not exist yet
            pass
    assert running == 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"] == "interrupted (Ctrl-C)" for t in trials)


def test_wait_workers_names_a_worker_that_died_and_exits_non_zero(capsys):
    import subprocess
    import sys

    from jointnas.search.worker import wait_workers

    ok = [sys.executable, "-c", "pass"]
    killed = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    procs = [subprocess.Popen(cmd) for cmd in (ok, killed, ok)]
    assert wait_workers(procs) == 128 + 9
    assert capsys.readouterr().err.splitlines() == [f"worker 1 (pid {procs[1].pid}) was killed by SIGKILL"]
    procs = [subprocess.Popen(cmd) for cmd in (ok, [sys.executable, "-c", "raise SystemExit(2)"])]
    assert wait_workers(procs) == 2
    assert capsys.readouterr().err.splitlines() == [f"worker 1 (pid {procs[1].pid}) exited with code 2"]
    assert wait_workers([subprocess.Popen(ok), subprocess.Popen(ok)]) == 0


_PARENT = """
import subprocess, sys, time
from jointnas.search.worker import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], preexec_fn=die_with_parent(),
                         start_new_session=True)
print(child.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie that nobody reaped yet counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_a_worker_started_with_die_with_parent_dies_when_its_parent_is_sigkilled():
    import signal
    import subprocess
    import time

    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)  # in its own session: a terminal's Ctrl-C would not reach it
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.time() + 30
        while _alive(child) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.slow
def test_sigkill_of_run_with_workers_stops_its_workers_and_marks_their_trials(tmp_path):
    import signal
    import subprocess
    import time

    name = unique("orphan")
    url = f"journal://{tmp_path / 'study.log'}"
    slow = make_config(tmp_path, name, url).read_text().replace("train_epochs = 1", "train_epochs = 400")
    cfg = tmp_path / "slow.toml"
    cfg.write_text(slow)
    proc = subprocess.Popen([sys.executable, "-m", "jointnas.search.cli", "run", str(cfg), "--workers", "2"])
    deadline = time.time() + 180
    running = []
    while time.time() < deadline and len(running) < 2:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(url))
            running = [t for t in study.trials if t.state == TrialState.RUNNING]
        except Exception:  # the study or its journal file may not exist yet
            pass
    assert len(running) == 2
    workers = [int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in running]
    proc.send_signal(signal.SIGKILL)  # no chance to pass anything on: the kernel tells the workers
    proc.wait(timeout=30)
    deadline = time.time() + 120
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"] == "terminated (SIGTERM)" for t in trials)
