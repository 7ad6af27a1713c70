"""A light worker for budget/crash tests and benchmarks: `jointnas.search.budget.run_trials` with a
sleeping objective, without importing torch (so a process starts in about a second).

    python tests/search_tests/_sleep_worker.py URL STUDY N_TRIALS TRIAL_S[cpu] [HEARTBEAT_S GRACE_S]

URL is an SQLAlchemy URL (RDB storage, Optuna's own class) or ``journal:///PATH`` / ``redis://…``
(journal storages, opened by `open_storage`: with HEARTBEAT_S they renew a lease, as ``jointnas worker`` does).
With ``JOINTNAS_START_AT`` (a `time.time()` value) in the environment the worker, once loaded, waits
until then before its first trial, so benchmarked workers start together. Prints one line
``done COMPLETE`` on success.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import optuna

from jointnas.search.budget import run_trials  # no torch: the packages export lazily


def storage(url: str, heartbeat_s: int | None, grace_s: int | None) -> optuna.storages.BaseStorage:
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    if url.startswith(("journal://", "redis://")):
        from jointnas.search.storage import open_storage

        return open_storage(url, heartbeat_s=heartbeat_s, grace_s=grace_s)
    kwargs = {}
    if heartbeat_s:
        kwargs = {
            "heartbeat_interval": heartbeat_s,
            "grace_period": grace_s,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        }
    return optuna.storages.RDBStorage(url, **kwargs)


def sleep_objective(seconds: float, cpu: bool = False):
    """Sleep ``seconds`` (a trial whose compute happens elsewhere), or with ``cpu`` spin a core as long."""

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if cpu:
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass
        else:
            time.sleep(seconds)
        return x

    return objective


def main(argv: list[str]) -> int:
    url, study_name, n_trials = argv[0], argv[1], int(argv[2])
    cpu = argv[3].endswith("cpu")  # "0.3cpu": spin one core for 0.3 s of CPU time
    trial_s = float(argv[3].removesuffix("cpu"))
    heartbeat_s = int(argv[4]) if len(argv) > 4 else None
    grace_s = int(argv[5]) if len(argv) > 5 else None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=study_name, storage=storage(url, heartbeat_s, grace_s))
    start_at = float(os.environ.get("JOINTNAS_START_AT", "0"))
    time.sleep(max(0.0, start_at - time.time()))
    complete = run_trials(study, sleep_objective(trial_s, cpu), n_trials, max_trials=10 * n_trials)
    print(f"done {complete}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
