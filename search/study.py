"""Create or resume a study from a config; record its definition; run it."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from jointnas.devices import is_profile_path, open_latency_model
from jointnas.objectives import TaskData, load_task
from jointnas.spaces import UserInputError

from .artifacts import ArtifactUploader, open_artifact_store
from .attrs import STUDY_CONFIG, STUDY_CONFIG_HASH, STUDY_SEED, STUDY_VERSIONS
from .budget import run_trials
from .config import StudyConfig, diff_configs
from .objective import Objective, TrialFailed
from .samplers import make_sampler
from .storage import default_storage_url, mask_password, open_storage


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


def load_study(storage: Any, study_name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserInputError(
            f"study {study_name!r} does not exist in this storage; existing: {', '.join(names) or 'none'}"
        ) from None


def create_or_resume(config: StudyConfig, storage_url: str) -> optuna.Study:
    """Open the study named in ``config``, creating it with its definition, or check it on resume.

    A stored config that differs from ``config`` (apart from storage and budget) is refused with the
    differing keys, before anything is written.
    """
    # The sampler's options are checked before the storage is opened (a bad option writes nothing).
    sampler = make_sampler(config.sampler.name, config.sampler.options, seed=config.study.seed, space=config.space)
    storage = open_storage(storage_url)
    name = config.study.name
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        stored = study.user_attrs.get(STUDY_CONFIG)
        if stored is None:
            raise UserInputError(f"study {name!r} exists but was not made by jointnas; pick another name")
        if study.user_attrs.get(STUDY_CONFIG_HASH) != config.config_hash():
            diffs = diff_configs(stored, config.canonical())
            shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
            raise UserInputError(
                f"config differs from the one stored in study {name!r} ({shown}); "
                "use a new [study] name or restore the stored values"
            )
        return study
    study = optuna.create_study(
        storage=storage, sampler=sampler, study_name=name, directions=config.objectives.directions
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(config.objectives.metrics))
    study.set_user_attr(STUDY_CONFIG, config.canonical())
    study.set_user_attr(STUDY_CONFIG_HASH, config.config_hash())
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
) -> optuna.Study:
    """Run trials until the study holds ``budget.n_trials`` COMPLETE trials (or the timeout hits).

    The budget is global to the study: every worker on the study counts the same COMPLETE trials
    (`jointnas.search.budget`). With ``artifact_dir``, each COMPLETE trial uploads its ONNX model and
    a JSON summary there (`jointnas.search.artifacts`). ``task``: the already loaded ``config.task``
    data (loaded here when ``None``).
    """
    task = load_task(config.task) if task is None else task
    table = open_latency_model(
        device_profile_ref(config, config_path),
        lut or lut_path(config, config_path),
        threads=config.device.threads,
        warmup=config.device.warmup,
        repeats=config.device.repeats,
    )
    set_context = getattr(study.sampler, "set_context", None)
    if callable(set_context):  # supernet samplers (dnas, hardcore) train on the task's splits with this table
        set_context(task=task, table=table, latency_cap_ms=config.constraints.latency_ms, artifact_dir=artifact_dir)
    if n_complete(study) >= config.budget.n_trials:
        return study
    objective = Objective(config, task, table)
    uploader = None
    if artifact_dir is not None:
        uploader = ArtifactUploader(open_artifact_store(artifact_dir), objective, task.input_shape)
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
    "device_profile_ref",
    "front",
    "load_study",
    "lut_path",
    "mask_password",
    "n_complete",
    "resolve_storage",
    "run_study",
    "trial_record",
    "versions",
]
