"""`jointnas run --workers K` gives each worker ``cores // K`` torch threads unless told otherwise, and
every trial records the count it trained with (user attr ``torch_threads``)."""

from __future__ import annotations

import pytest
import torch
from optuna.trial import TrialState

from jointnas.search.cli import main
from jointnas.search.cli import run as run_cli
from jointnas.search.cli.worker import available_cores, threads_per_worker
from jointnas.search.storage import open_storage

from ._distributed import make_config, unique

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")


@pytest.fixture
def torch_threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _started(monkeypatch, tmp_path, *flags: str) -> list[str]:
    """The extra arguments `jointnas run --workers 2 ...` hands its workers (processes not started)."""
    seen: list[list[str]] = []
    monkeypatch.setattr(run_cli, "start_workers", lambda *a, extra=None, **k: seen.append(extra) or [])
    monkeypatch.setattr(run_cli, "wait_workers", lambda procs: 0)
    cfg = make_config(tmp_path, unique("threads"), None)
    assert main(["run", str(cfg), "--workers", "2", *flags]) == 0
    (extra,) = seen
    return extra


def test_each_of_k_workers_gets_cores_over_k_threads_unless_told(monkeypatch, tmp_path):
    assert threads_per_worker(2, cores=2) == 1 and threads_per_worker(2, cores=16) == 8
    assert threads_per_worker(3, cores=2) == 1  # never 0
    extra = _started(monkeypatch, tmp_path)
    assert extra[extra.index("--torch-threads") + 1] == str(max(1, available_cores() // 2))
    (tmp_path / "b").mkdir()
    extra = _started(monkeypatch, tmp_path / "b", "--torch-threads", "3")
    assert extra[extra.index("--torch-threads") + 1] == "3"


def test_worker_and_run_train_with_the_threads_given_and_record_them(tmp_path, capsys, torch_threads_restored):
    torch.set_num_threads(1)
    name = unique("threads")
    url = f"sqlite:///{tmp_path / 't.db'}"
    cfg = make_config(tmp_path, name, url)
    assert main(["run", str(cfg), "--n-trials", "1", "--torch-threads", "2"]) == 0
    assert main(["worker", "--storage", url, "--study-name", name, "--n-trials", "2", "--torch-threads", "3"]) == 0
    capsys.readouterr()
    import optuna

    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(states=(TrialState.COMPLETE,))
    assert [t.user_attrs["torch_threads"] for t in trials] == [2, 3]


@pytest.mark.parametrize("argv", [["--torch-threads", "0"], ["--workers", "2", "--torch-threads", "-1"]])
def test_torch_threads_below_one_is_refused_before_the_study(tmp_path, capsys, argv):
    cfg = make_config(tmp_path, unique("threads"), None)
    assert main(["run", str(cfg), *argv]) == 2
    assert "--torch-threads must be at least 1" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.db"))


@pytest.mark.slow
def test_two_real_workers_record_cores_over_two_threads(tmp_path, capsys):
    name = unique("threads2")
    url = f"journal://{tmp_path / 'study.log'}"
    cfg = make_config(tmp_path, name, url)
    assert main(["run", str(cfg), "--workers", "2", "--n-trials", "2"]) == 0
    import optuna

    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) >= 2
    assert {t.user_attrs["torch_threads"] for t in trials} == {threads_per_worker(2)}
