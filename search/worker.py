"""Workers: join a study from its stored definition; start K local worker processes.

A study made by ``jointnas run`` stores its canonical config (``jointnas:config``), the config's hash,
the package versions, the budget (``jointnas:n_trials``) and the artifact directory
(``jointnas:artifact_dir``). ``jointnas worker`` rebuilds the config from the study, so a worker
needs only the storage URL and the study name, and refuses a study whose config this code cannot
reproduce or that another jointnas version made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from jointnas.spaces import UserInputError

from .artifacts import default_artifact_dir
from .attrs import STUDY_ARTIFACT_DIR, STUDY_CONFIG, STUDY_CONFIG_HASH, STUDY_N_TRIALS, STUDY_VERSIONS
from .config import StudyConfig, apply_overrides, parse_config
from .storage import storage_file
from .study import versions

#: Environment variable that hands the storage URL to worker processes (keeps passwords out of ``ps``).
STORAGE_ENV = "JOINTNAS_STORAGE"


def config_from_study(study: optuna.Study, n_trials: int | None = None) -> StudyConfig:
    """The config stored in ``study``, checked against this code; `UserInputError` if it cannot be used.

    Args:
        n_trials: the global budget; default the one stored by the last ``jointnas run``.
    """
    name = study.study_name
    stored = study.user_attrs.get(STUDY_CONFIG)
    if stored is None:
        raise UserInputError(f"study {name!r} was not made by jointnas (no stored config); start it with jointnas run")
    made_by = (study.user_attrs.get(STUDY_VERSIONS) or {}).get("jointnas", "unknown")
    ours = versions()["jointnas"]
    if made_by != ours:
        raise UserInputError(
            f"study {name!r} was made by jointnas {made_by}, this is jointnas {ours}; "
            f"install jointnas=={made_by} for this worker or start a new study"
        )
    try:
        config = parse_config(stored, f"config stored in study {name!r}")
    except UserInputError as exc:
        raise UserInputError(f"{exc}; the study was made by another config version") from None
    if config.config_hash() != study.user_attrs.get(STUDY_CONFIG_HASH):
        raise UserInputError(
            f"the config stored in study {name!r} does not match its hash (made by another config version); "
            "start a new study with jointnas run"
        )
    budget = n_trials if n_trials is not None else study.user_attrs.get(STUDY_N_TRIALS)
    if budget is None:
        raise UserInputError(f"study {name!r} stores no trial budget; pass --n-trials N")
    return apply_overrides(config, **{"budget.n_trials": int(budget)})


def record_run(study: optuna.Study, n_trials: int, artifact_dir: Path | None) -> None:
    """Store the budget and artifact directory of a run, which workers that join later use."""
    if study.user_attrs.get(STUDY_N_TRIALS) != n_trials:
        study.set_user_attr(STUDY_N_TRIALS, n_trials)
    if artifact_dir is not None and study.user_attrs.get(STUDY_ARTIFACT_DIR) != str(artifact_dir):
        study.set_user_attr(STUDY_ARTIFACT_DIR, str(artifact_dir))


def run_artifact_dir(config: StudyConfig, config_path: Path, url: str, option: str | None) -> Path:
    """``--artifact-dir``, else ``[study] artifact_dir`` (relative to the config), else the default."""
    if option:
        return Path(option).resolve()
    if config.study.artifact_dir:
        p = Path(config.study.artifact_dir).expanduser()
        return (p if p.is_absolute() else config_path.parent / p).resolve()
    return default_artifact_dir(config.study.name, storage_file(url), config_path)


def start_workers(
    k: int,
    storage_url: str,
    study_name: str,
    *,
    n_trials: int,
    artifact_dir: Path | None,
    lut: Path | None,
    extra: list[str] | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Start ``k`` ``jointnas worker`` processes on this machine; the URL travels in the environment."""
    cmd = [sys.executable, "-c", "from jointnas.search.cli import _entry; _entry()", "worker"]
    cmd += ["--study-name", study_name, "--n-trials", str(n_trials)]
    cmd += ["--artifact-dir", str(artifact_dir)] if artifact_dir is not None else ["--no-artifacts"]
    if lut is not None:
        cmd += ["--lut", str(lut)]
    cmd += extra or []
    env = dict(os.environ, **{STORAGE_ENV: storage_url})
    # Own sessions: a terminal's Ctrl-C reaches only this process, which passes it on exactly once
    # (`wait_workers`), so no worker is interrupted twice while it marks its trial.
    return [subprocess.Popen([*cmd, "--worker-index", str(i)], env=env, start_new_session=True) for i in range(k)]


def wait_workers(procs: list[subprocess.Popen[bytes]]) -> int:
    """Wait for all workers; on Ctrl-C pass SIGINT on (each marks its trial) and return 130."""
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.2)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        return 130
    codes = [p.returncode for p in procs]
    return 130 if 130 in codes else max(codes)


__all__ = [
    "STORAGE_ENV",
    "config_from_study",
    "record_run",
    "run_artifact_dir",
    "start_workers",
    "wait_workers",
]
