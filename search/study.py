"""Create or resume a study from a config; record its definition; run it."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from jointnas.compression import resolve_device
from jointnas.devices import is_profile_path, load_profile, open_latency_model
from jointnas.objectives import TaskData, load_task
from jointnas.objectives.board import check_verifiable
from jointnas.spaces import UserInputError

from .artifacts import ArtifactUploader, open_artifact_store
from .attrs import (
    STUDY_CONFIG,
    STUDY_CONFIG_HASH,
    STUDY_SAMPLER_SEED,
    STUDY_SEED,
    STUDY_SPACE_FILTER,
    STUDY_VERSIONS,
)
from .budget import WORKER_ID, run_trials
from .config import StudyConfig, diff_configs
from .objective import Objective, TrialFailed
from .samplers import make_sampler
from .storage import default_storage_url, mask_password, open_storage, remember_secrets


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("jointnas", "optuna", "torch", "onnxruntime", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def resolve_storage(config: StudyConfig, config_path: Path | None) -> str:
    if config.study.storage:
        remember_secrets(config.study.storage)  # masked in every later message, before anything prints it
        return config.study.storage
    if config_path is None:
        raise UserInputError("no storage given; set [study] storage or pass --storage URL")
    return default_storage_url(config_path, config.study.name)


def lut_path(config: StudyConfig, config_path: Path | None) -> Path | None:
    """The latency table file: ``[device] lut``, else next to the config (one file per thread count)."""
    if config.device.lut:
        p = Path(config.device.lut)
        return p if p.is_absolute() or config_path is None else config_path.parent / p
    if config_path is None:
        return None
    device = Path(config.device.name).stem if is_profile_path(config.device.name) else config.device.name
    return config_path.parent / f"lut-{device}-t{config.device.threads}.json"


def device_profile_ref(config: StudyConfig, config_path: Path | None) -> str:
    """``[device] name``: a packaged profile name, or a profile file resolved next to the config."""
    name = config.device.name
    if is_profile_path(name) and config_path is not None and not Path(name).is_absolute():
        return str(config_path.parent / name)
    return name


def device_model(config: StudyConfig, config_path: Path | None, lut: Path | None = None) -> Any:
    """The study's latency predictor (`open_latency_model`): loads and checks the device profile and its
    table (malformed, missing or another device's: `UserInputError`), and with ``[device] verify`` that its
    builds can run here (`check_verifiable`), so a run can do it before any write."""
    model = open_latency_model(
        device_profile_ref(config, config_path),
        lut or lut_path(config, config_path),
        threads=config.device.threads,
        warmup=config.device.warmup,
        repeats=config.device.repeats,
    )
    if config.device.verify:
        check_verifiable(load_profile(device_profile_ref(config, config_path)))
    return model


def load_study(storage: Any, study_name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserInputError(
            f"study {study_name!r} does not exist in this storage; existing: {', '.join(names) or 'none'}"
        ) from None


def seed_sampler(config: StudyConfig, study: optuna.Study, salt: int = 0) -> int:
    """Give ``study`` the config's sampler, seeded to continue the study rather than start it over.

    The seed is ``seed + salt + N`` with N the trials already in the study (any state), so a fresh
    study draws what its seed says, while a resumed run (or a worker: ``salt`` per worker index) does
    not draw the first run's candidates again. Recorded as study user attr
    ``jointnas:sampler_seed:N:HOST:PID``. Returns the seed.
    """
    n = len(study.get_trials(deepcopy=False))
    seed = (config.study.seed + salt + n) % 2**31
    study.sampler = make_sampler(config.sampler.name, config.sampler.options, seed=seed, space=config.space)
    study.set_user_attr(f"{STUDY_SAMPLER_SEED}{n}:{WORKER_ID}", seed)
    return seed


def create_or_resume(config: StudyConfig, storage_url: str, **storage_options: Any) -> optuna.Study:
    """Open the study named in ``config``, creating it with its definition, or check it on resume.

    A stored config that differs from ``config`` (apart from storage and budget) is refused with the
    differing keys, before anything is written. The sampler is seeded by `seed_sampler`. Two first
    runs started together create the study once: the slower one loads it. ``storage_options``: for
    `open_storage` (``heartbeat_s``, ``grace_s``, ``reconnect_s``).
    """
    # The device and the sampler's options first: a refused value must not leave an SQLite file behind.
    resolve_device(config.pipeline.device)
    make_sampler(config.sampler.name, config.sampler.options, seed=config.study.seed, space=config.space)
    storage = open_storage(storage_url, **storage_options)
    name = config.study.name
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    study = None if name in existing else _create(config, storage)
    if study is None:
        study = optuna.load_study(study_name=name, storage=storage)
        stored = _stored_config(study)
        if stored is None:
            raise UserInputError(f"study {name!r} exists but was not made by jointnas; pick another name")
        if study.user_attrs.get(STUDY_CONFIG_HASH) != config.config_hash():
            diffs = diff_configs(stored, config.canonical())
            shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
            raise UserInputError(
                f"config differs from the one stored in study {name!r} ({shown}); "
                "use a new [study] name or restore the stored values"
            )
    seed_sampler(config, study)
    return study


#: Seconds a run that lost the race to create a study waits for the winner to store its config.
CREATE_WAIT_S = 10.0


def _stored_config(study: optuna.Study) -> dict[str, Any] | None:
    """The study's stored config; an empty study without one may be one another run is creating."""
    deadline = time.monotonic() + CREATE_WAIT_S
    while True:
        stored = study._storage.get_study_user_attrs(study._study_id).get(STUDY_CONFIG)
        if stored is not None or study.get_trials(deepcopy=False) or time.monotonic() > deadline:
            return stored
        time.sleep(0.2)


def _create(config: StudyConfig, storage: Any) -> optuna.Study | None:
    """Create the study with its definition; None if another process created it first."""
    try:
        study = optuna.create_study(
            storage=storage, study_name=config.study.name, directions=config.objectives.directions
        )
    except optuna.exceptions.DuplicatedStudyError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(config.objectives.metrics))
    study.set_user_attr(STUDY_CONFIG_HASH, config.config_hash())
    study.set_user_attr(STUDY_CONFIG, config.canonical())  # last: a loser of the race waits for it
    study.set_user_attr(STUDY_SEED, config.study.seed)
    study.set_user_attr(STUDY_VERSIONS, versions())
    return study


def n_complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def run_study(
    config: StudyConfig,
    study: optuna.Study,
    *,
    config_path: Path | None,
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None = None,
    artifact_dir: Path | None = None,
    lut: Path | None = None,
    task: TaskData | None = None,
    table: Any = None,
) -> optuna.Study:
    """Run trials until the study holds ``budget.n_trials`` COMPLETE trials (or the timeout hits).

    The budget is global to the study: every worker on the study counts the same COMPLETE trials
    (`jointnas.search.budget`). With ``artifact_dir``, each COMPLETE trial uploads its ONNX model and
    a JSON summary there (`jointnas.search.artifacts`). ``task``: the already loaded ``config.task``
    data (loaded here when ``None``); ``table``: the already opened `device_model` (likewise).
    """
    task = load_task(config.task) if task is None else task
    table = device_model(config, config_path, lut) if table is None else table
    set_context = getattr(study.sampler, "set_context", None)
    if callable(set_context):  # supernet samplers (dnas, hardcore) train on the task's splits with this table
        set_context(
            task=task,
            table=table,
            latency_cap_ms=config.constraints.latency_ms,
            artifact_dir=artifact_dir,
            device=config.pipeline.device,
            objectives=config.objectives.metrics,
        )
    if n_complete(study) >= config.budget.n_trials:
        return study
    objective = Objective(config, task, table)
    if objective.space_filter is not None:
        study.set_user_attr(STUDY_SPACE_FILTER, objective.space_filter.as_dict())
    uploader = None
    if artifact_dir is not None:
        uploader = ArtifactUploader(open_artifact_store(artifact_dir), objective, task)
    run_trials(
        study,
        objective,
        config.budget.n_trials,
        timeout=config.budget.timeout,
        catch=(TrialFailed,),
        callbacks=callbacks or (),
        on_success=uploader,
    )
    return study


def front(study: optuna.Study) -> list[FrozenTrial]:
    """Pareto-optimal COMPLETE trials (feasible ones first when constraints were recorded)."""
    trials = study.best_trials
    return sorted(trials, key=lambda t: t.number)


def trial_record(trial: FrozenTrial, metric_names: list[str] | None) -> dict[str, Any]:
    names = metric_names or [f"value{i}" for i in range(len(trial.values or []))]
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": dict(zip(names, trial.values, strict=True)) if trial.values else None,
        "params": trial.params,
        "user_attrs": json.loads(json.dumps(trial.user_attrs, default=str)),
    }


__all__ = [
    "create_or_resume",
    "device_model",
    "device_profile_ref",
    "front",
    "load_study",
    "lut_path",
    "mask_password",
    "n_complete",
    "resolve_storage",
    "run_study",
    "seed_sampler",
    "trial_record",
    "versions",
]
