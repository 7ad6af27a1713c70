"""Workers: join a study from its stored definition; start K local worker processes.

A study made by ``jointnas run`` stores its canonical config (``jointnas:config``), the config's hash,
the package versions, the budget (``jointnas:n_trials``) and the artifact directory
(``jointnas:artifact_dir``). ``jointnas worker`` rebuilds the config from the study, so a worker
needs only the storage URL and the study name, and refuses a study whose config this code cannot
reproduce or that another jointnas version made.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
    # (`wait_workers`), so no worker is interrupted twice while it marks its trial. If this process
    # dies (SIGKILL too), the kernel sends each worker SIGTERM (`die_with_parent`).
    return [
        subprocess.Popen(
            [*cmd, "--worker-index", str(i)], env=env, start_new_session=True, preexec_fn=die_with_parent()
        )
        for i in range(k)
    ]


#: ``prctl`` option: the signal the kernel sends a process when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` after which the child gets ``sig`` when this process dies; None off Linux.

    The child handles SIGTERM like Ctrl-C (`jointnas worker` marks its trial FAIL with
    ``fail_reason = "terminated (SIGTERM)"``), so killing the parent, even with SIGKILL, stops its
    workers instead of leaving them orphaned in their own sessions.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def set_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return set_signal


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def wait_workers(procs: list[subprocess.Popen[bytes]]) -> int:
    """Wait for all workers; on Ctrl-C pass SIGINT on (each marks its trial) and return 130.

    A worker that died abnormally is named on stderr (its running trial is retried by the others
    after the grace period) and the exit code is non-zero: its own, or 128 + the signal that killed it.
    """
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
    if 130 in codes:
        return 130
    for i, p in enumerate(procs):
        if p.returncode != 0:
            print(f"worker {i} (pid {p.pid}) {_describe_exit(p.returncode)}", file=sys.stderr)
    bad = [c if c > 0 else 128 - c for c in codes if c != 0]
    return max(bad, default=0)


__all__ = [
    "STORAGE_ENV",
    "config_from_study",
    "die_with_parent",
    "record_run",
    "run_artifact_dir",
    "start_workers",
    "wait_workers",
]
