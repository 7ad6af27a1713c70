"""Train-once-per-study weights: a study-attribute lock plus an Optuna artifact, shared by every worker.

The first worker to take the lock trains and uploads a ``state_dict`` as an artifact of the study and
records its id in a study user attr; every other worker (thread, process or machine on the same
storage and artifact store) waits for that attr and downloads the weights. Optuna storages offer no
compare-and-swap on attributes, so the lock is *write, settle, re-read*: a worker writes its token only
when no live lock exists, waits ``settle_s`` and owns the lock if its token is still there (two workers
whose writes land within ``settle_s`` of each other both re-read the later token, so exactly one
trains). A lock older than ``lock_timeout_s`` without an artifact (a crashed trainer) is taken over.

Train once, search many: every trained set of weights is also written to the store under an id made
of its key (`keyed_artifact_id`), with its record beside it. A later study on the same store whose
key matches (same space, task, options, seed: the sampler's fingerprint) loads those weights and
trains nothing; its record says ``reused: true`` and ``train_s_here: 0``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from jointnas.spaces import UserInputError

from ..artifacts import default_artifact_dir


def storage_location(study: optuna.Study) -> Path | None:
    """The file behind a study's storage (SQLite database or journal file), if it is a local file."""
    layer: Any = study._storage  # Optuna wraps RDB storages in a cache, journals around a file backend
    while layer is not None:
        url = getattr(layer, "url", None)
        if isinstance(url, str) and url.startswith("sqlite:///") and ":memory:" not in url:
            return Path(url[len("sqlite:///") :])
        path = getattr(layer, "_file_path", None)
        if path:
            return Path(path)
        layer = getattr(layer, "_backend", None)
    return None


def default_artifact_store(study: optuna.Study, artifact_store: Any = None, run_dir: Path | None = None) -> Any:
    """The store for a study's trained supernet: where `jointnas run` keeps the trial artifacts.

    ``artifact_store`` (an ArtifactStore or a directory, the sampler's option) if given; else
    ``run_dir``, the trial artifacts' directory the jointnas runner gives the sampler (`set_context`),
    so supernet and trial models share one store every worker already reaches; else
    ``<study>-artifacts`` next to the SQLite or journal file (the same default as ``jointnas run``). An
    in-memory study gets a private temporary directory; a server storage (PostgreSQL, MySQL, Redis)
    outside ``jointnas run`` needs an explicit store.
    """
    if artifact_store is not None and not isinstance(artifact_store, (str, os.PathLike)):
        return artifact_store
    if artifact_store is not None:
        path = Path(artifact_store)
    elif run_dir is not None:
        path = Path(run_dir)
    else:
        location = storage_location(study)
        if location is not None:
            path = default_artifact_dir(study.study_name, location, None)
        elif isinstance(getattr(study._storage, "_backend", study._storage), optuna.storages.InMemoryStorage):
            path = Path(tempfile.mkdtemp(prefix="jointnas-artifacts-"))
        else:
            raise UserInputError(
                "a supernet sampler on a server storage needs a shared artifact directory; run it through "
                'jointnas run --artifact-dir DIR, or set [sampler] options = { artifact_store = "/shared/dir" }'
            )
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(path)


def _read_attr(study: optuna.Study, name: str) -> Any:
    return study._storage.get_study_user_attrs(study._study_id).get(name)


def keyed_artifact_id(attr: str, key: str) -> str:
    """The store id of the weights trained for ``key`` (``attr`` names the sampler): one per fingerprint."""
    return f"jointnas-{attr.replace(':', '-')}-{key}.pt"


def _stored_record(artifact_store: Any, attr: str, key: str) -> dict[str, Any] | None:
    """The record of weights an earlier study trained for ``key`` into this store, if any."""
    try:
        with artifact_store.open_reader(keyed_artifact_id(attr, key) + ".json") as reader:
            record = json.loads(reader.read())
    except (ArtifactNotFound, FileNotFoundError, ValueError):
        return None
    return record if record.get("key") == key else None


def _store_keyed(artifact_store: Any, attr: str, key: str, path: Path, record: dict[str, Any]) -> None:
    """Write the weights and their record under the key's ids (after the weights: a record implies them)."""
    artifact_id = keyed_artifact_id(attr, key)
    with open(path, "rb") as f:
        artifact_store.write(artifact_id, f)
    body = json.dumps({**record, "artifact_id": artifact_id}).encode()
    artifact_store.write(artifact_id + ".json", io.BytesIO(body))


def train_once(
    study: optuna.Study,
    attr: str,
    key: str,
    train: Callable[[], tuple[dict[str, Any], dict[str, Any]]],
    artifact_store: Any,
    *,
    settle_s: float = 1.0,
    poll_s: float = 0.5,
    wait_timeout_s: float = 3600.0,
    lock_timeout_s: float = 7200.0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the study's weights for ``key``, training them here only if no worker did or does and
    no earlier study stored them for ``key`` in ``artifact_store``.

    Args:
        study: the study whose user attrs hold the lock (``attr + ":lock"``) and record (``attr``).
        attr: user-attr name of the record ``{"key", "artifact_id", **info}``.
        key: identifies what is trained (a hash of the settings); a record for another key is retrained.
        train: ``() -> (state, info)``: ``state`` a dict of tensors (nested dicts and lists allowed, what
            ``torch.load(weights_only=True)`` reads back); ``info`` (JSON) is stored in the record.
        artifact_store: where the weights file goes (see `default_artifact_store`).
        settle_s: seconds between writing the lock token and re-reading it.
        poll_s: seconds between checks while another worker trains.
        wait_timeout_s: give up waiting after this many seconds (``TimeoutError``).
        lock_timeout_s: a lock older than this without a record is considered abandoned.

    Returns:
        ``(state_dict, record)``; ``record["trained_here"]`` says whether this call trained,
        ``record["train_s_here"]`` the seconds this study spent training (0 when ``record["reused"]``:
        the weights came from an earlier study).
    """
    lock_attr = f"{attr}:lock"
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_timeout_s
    while True:
        record = _read_attr(study, attr)
        if record and record.get("key") == key:
            return _download(artifact_store, record), dict(record, trained_here=False)
        stored = _stored_record(artifact_store, attr, key)
        if stored is not None:
            record = {**stored, "reused": True, "train_s_here": 0.0}
            study.set_user_attr(attr, record)
            return _download(artifact_store, record), dict(record, trained_here=False)
        lock = _read_attr(study, lock_attr)
        live = lock and lock.get("key") == key and time.time() - float(lock.get("time", 0)) < lock_timeout_s
        if not live:
            study.set_user_attr(lock_attr, {"token": token, "key": key, "time": time.time()})
            time.sleep(settle_s)
            lock = _read_attr(study, lock_attr)
            if lock and lock.get("token") == token:
                break
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {wait_timeout_s:.0f} s for another worker to train {attr!r}")
        time.sleep(poll_s)
    state, info = train()
    # Another worker may have finished first after a takeover: keep one set of weights per study.
    record = _read_attr(study, attr)
    if record and record.get("key") == key:
        return _download(artifact_store, record), dict(record, trained_here=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{attr.replace(':', '-')}.pt"
        torch.save(state, path)
        artifact_id = upload_artifact(artifact_store=artifact_store, file_path=str(path), study_or_trial=study)
        record = {"key": key, "artifact_id": artifact_id, **info, "reused": False}
        record["train_s_here"] = float(info.get("train_s", 0.0))
        _store_keyed(artifact_store, attr, key, path, record)
    study.set_user_attr(attr, record)
    return state, dict(record, trained_here=True)


def _download(artifact_store: Any, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        download_artifact(artifact_store=artifact_store, file_path=str(path), artifact_id=record["artifact_id"])
        return torch.load(path, weights_only=True)
