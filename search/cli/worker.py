"""``jointnas worker``: join an existing study on a shared storage and run trials of its global budget."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import optuna

from jointnas.spaces import UserInputError

from ..artifacts import default_artifact_dir
from ..attrs import STUDY_ARTIFACT_DIR
from ..budget import interrupt_reason, raise_terminated
from ..config import apply_overrides
from ..heartbeat import DEFAULT_RECONNECT_S
from ..storage import DEFAULT_HEARTBEAT_S, check_storage_exists, mask_password, open_storage, storage_file
from ..study import load_study, n_complete, run_study, seed_sampler
from ..tools.dashboard import save_study_notes
from ..worker import STORAGE_ENV, config_from_study
from .exits import EXIT_INTERRUPTED, EXIT_OK
from .progress import TrialProgress


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch intra-op threads of each of ``workers`` processes on one host: ``cores // workers``, at least 1.

    Example:
        >>> threads_per_worker(2, cores=2), threads_per_worker(3, cores=8), threads_per_worker(4, cores=2)
        (1, 2, 1)
    """
    return max(1, (available_cores() if cores is None else cores) // max(1, workers))


def set_torch_threads(threads: int | None) -> None:
    """Give torch ``threads`` intra-op threads (None: leave its default); each trial records the count
    it trained with (user attr ``torch_threads``)."""
    if threads is None:
        return
    if threads < 1:
        raise UserInputError(f"--torch-threads must be at least 1 (got {threads})")
    import torch

    torch.set_num_threads(threads)


def worker_artifact_dir(args: argparse.Namespace, study: optuna.Study, url: str) -> Path | None:
    """``--artifact-dir``, else the one the study stores, else ``<study>-artifacts`` next to the storage."""
    if args.no_artifacts:
        return None
    if args.artifact_dir:
        return Path(args.artifact_dir).resolve()
    if study.user_attrs.get(STUDY_ARTIFACT_DIR):
        return Path(study.user_attrs[STUDY_ARTIFACT_DIR])
    return default_artifact_dir(study.study_name, storage_file(url), None)


def cmd_worker(args: argparse.Namespace) -> int:
    url = args.storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise UserInputError(f"no storage given; pass --storage URL or set {STORAGE_ENV}")
    check_storage_exists(url)  # a worker joins a study: it never creates a storage file
    set_torch_threads(args.torch_threads)
    storage = open_storage(url, heartbeat_s=args.heartbeat, grace_s=args.grace, reconnect_s=args.reconnect)
    study = load_study(storage, args.study_name)
    config = config_from_study(study, args.n_trials)
    if args.timeout is not None:
        config = apply_overrides(config, **{"budget.timeout": args.timeout})
    index = args.worker_index if args.worker_index is not None else os.getpid()
    # Workers must not draw the same candidates as each other or as earlier runs: the seed depends on
    # the worker index and the trials already in the study (a trial's training seed is
    # study.seed + trial.number, whichever worker runs it).
    seed_sampler(config, study, salt=7919 * (index + 1))
    artifact_dir = worker_artifact_dir(args, study, url)
    n = config.budget.n_trials
    print(
        f"worker {index} joined study {args.study_name!r} on {mask_password(url)}: "
        f"{n_complete(study)}/{n} COMPLETE; artifacts: {artifact_dir or 'off'}",
        file=sys.stderr,
    )
    started = time.perf_counter()
    # SIGTERM (the parent died, a scheduler stops this worker) is handled like Ctrl-C: the trial is marked.
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with TrialProgress(study, n) as progress:
            run_study(config, study, config_path=None, callbacks=[progress], artifact_dir=artifact_dir, lut=args.lut)
    except KeyboardInterrupt as exc:
        reason = interrupt_reason(exc)
        print(f"{reason}: the running trial is marked FAIL; start the worker again to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    save_study_notes(study)  # the Pareto plot and summary note optuna-dashboard shows
    print(
        f"worker {index} done: study holds {n_complete(study)}/{n} COMPLETE trials "
        f"({time.perf_counter() - started:.1f} s)",
        file=sys.stderr,
    )
    return EXIT_OK


def add_heartbeat_options(p: argparse.ArgumentParser) -> None:
    """``--heartbeat`` and ``--grace``, the same for ``run`` and ``worker`` and for every storage."""
    p.add_argument(
        "--heartbeat", type=int, default=DEFAULT_HEARTBEAT_S, help="seconds between heartbeats (every storage)"
    )
    p.add_argument("--grace", type=int, help="seconds without heartbeat before a trial is retried (default 2x)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="join an existing study (its config is read from the storage) and run trials of its budget",
    )
    p.add_argument("--storage", help=f"storage URL (default: ${STORAGE_ENV})")
    p.add_argument("--study-name", required=True)
    p.add_argument("--n-trials", type=int, help="COMPLETE trials the whole study should hold (default: stored)")
    p.add_argument("--timeout", type=float, help="seconds after which this worker starts no new trial")
    p.add_argument("--artifact-dir", help="artifact directory (default: the study's, else next to the storage)")
    p.add_argument("--no-artifacts", action="store_true", help="do not upload ONNX models and summaries")
    add_heartbeat_options(p)
    p.add_argument(
        "--reconnect",
        type=float,
        default=DEFAULT_RECONNECT_S,
        help="seconds to wait for a storage that dropped its connection before exiting with code 2",
    )
    p.add_argument("--lut", type=Path, help="latency table file (default: measured in memory)")
    p.add_argument(
        "--torch-threads", type=int, help="torch intra-op threads for training (default: torch's, all cores)"
    )
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_worker)
