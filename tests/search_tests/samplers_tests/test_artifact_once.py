"""Train-once weights shared by a study's workers: where they are stored, and who trains them."""

from __future__ import annotations

import threading
import time

import optuna
import pytest
import torch

from jointnas.search.samplers._artifact_once import default_artifact_store, train_once
from jointnas.search.storage import open_storage
from jointnas.spaces import UserInputError

from .._distributed import PG_URL, service_or_skip, unique


def _store_dir(store) -> str:
    return str(store._base_path)


def test_the_store_is_the_one_given_else_the_studys_artifact_directory_else_beside_the_file(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    assert _store_dir(default_artifact_store(study)) == str(tmp_path / "s-artifacts")  # jointnas run's default
    given = tmp_path / "given"
    assert _store_dir(default_artifact_store(study, given)) == str(given) and given.is_dir()
    # The runner's trial artifacts' directory (`jointnas run --artifact-dir`): supernet and trial models share it.
    shared = tmp_path / "shared"
    assert _store_dir(default_artifact_store(study, None, shared)) == str(shared)
    assert _store_dir(default_artifact_store(study, given, shared)) == str(given)  # an explicit option still wins

    journal = optuna.create_study(storage=open_storage(f"journal://{tmp_path / 'j.log'}"), study_name="j")
    assert _store_dir(default_artifact_store(journal)) == str(tmp_path / "j-artifacts")
    assert (tmp_path / "j-artifacts").is_dir()


def test_a_server_storage_without_a_recorded_directory_asks_for_one():
    service_or_skip(PG_URL)
    name = unique("store")
    study = optuna.create_study(storage=open_storage(PG_URL), study_name=name)
    try:
        with pytest.raises(UserInputError, match="--artifact-dir DIR"):
            default_artifact_store(study)
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(PG_URL))


def test_racing_workers_train_once_and_all_get_the_same_weights(tmp_path):
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    optuna.create_study(storage=storage, study_name="r")
    store = default_artifact_store(optuna.load_study(study_name="r", storage=storage), tmp_path / "store")
    calls, results = [], []

    def train():
        calls.append(threading.get_ident())
        time.sleep(0.3)
        return {"w": torch.arange(4.0), "logits": [{"a": torch.ones(2)}]}, {"train_s": 0.3}

    def worker():
        study = optuna.load_study(study_name="r", storage=storage)  # each worker its own study object
        results.append(train_once(study, "x:supernet", "k1", train, store, settle_s=0.3, poll_s=0.05))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r[1]["trained_here"] for r in results) == [False, False, True]
    for state, record in results:
        assert torch.equal(state["w"], torch.arange(4.0)) and torch.equal(state["logits"][0]["a"], torch.ones(2))
        assert record["key"] == "k1" and record["train_s"] == 0.3
    study = optuna.load_study(study_name="r", storage=storage)
    assert len(optuna.artifacts.get_all_artifact_meta(study)) == 1

    # Other settings (another key) train again; a stale lock (its trainer died) is taken over.
    study.set_user_attr("x:supernet:lock", {"token": "dead", "key": "k2", "time": time.time() - 10})
    state, record = train_once(study, "x:supernet", "k2", train, store, settle_s=0.0, lock_timeout_s=5)
    assert record["trained_here"] and record["key"] == "k2" and len(calls) == 2
    assert study.user_attrs["x:supernet"]["key"] == "k2"


def test_a_later_study_on_the_same_store_reuses_the_weights_of_its_key(tmp_path):
    """Train once, search many: another study (another name, its own storage) with the same key and
    store loads the stored weights and trains nothing; another key trains."""
    store_dir = tmp_path / "store"
    calls = []

    def train():
        calls.append(1)
        return {"w": torch.arange(3.0)}, {"train_s": 2.5}

    first = optuna.create_study(storage=f"sqlite:///{tmp_path / 'a.db'}", study_name="a")
    _, record = train_once(first, "x:supernet", "k1", train, default_artifact_store(first, store_dir), settle_s=0)
    assert record["trained_here"] and not record["reused"] and record["train_s_here"] == 2.5
    second = optuna.create_study(storage=f"sqlite:///{tmp_path / 'b.db'}", study_name="b")
    state, record = train_once(second, "x:supernet", "k1", train, default_artifact_store(second, store_dir))
    assert len(calls) == 1 and torch.equal(state["w"], torch.arange(3.0))
    assert record["reused"] and not record["trained_here"] and record["train_s_here"] == 0.0
    assert record["train_s"] == 2.5  # the original training's seconds stay in the record
    assert second.user_attrs["x:supernet"]["reused"] is True
    # a worker of the second study finds the study's record (no store lookup needed)
    _, again = train_once(optuna.load_study(study_name="b", storage=f"sqlite:///{tmp_path / 'b.db'}"),
                          "x:supernet", "k1", train, default_artifact_store(second, store_dir))  # fmt: skip
    assert again["reused"] and len(calls) == 1
    _, other = train_once(second, "x:supernet", "k2", train, default_artifact_store(second, store_dir), settle_s=0)
    assert other["trained_here"] and len(calls) == 2
    # elsewhere (another store) nothing is found: it trains
    third = optuna.create_study(storage=f"sqlite:///{tmp_path / 'c.db'}", study_name="c")
    _, record = train_once(
        third, "x:supernet", "k1", train, default_artifact_store(third, tmp_path / "other"), settle_s=0
    )
    assert record["trained_here"] and len(calls) == 3
