"""``jointnas run``, ``pareto`` and ``trials``: run (or resume) a study, print its front or its trials."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from jointnas.compression import resolve_device
from jointnas.objectives import TaskData, load_task
from jointnas.spaces import UserInputError, check_family_input, family_names, get_family

from ..config import StudyConfig, apply_overrides, load_config
from ..paths import output_dir, output_file
from ..storage import check_storage_folder, mask_password, open_storage
from ..study import (
    create_or_resume,
    device_model,
    front,
    load_study,
    lut_path,
    n_complete,
    resolve_storage,
    run_study,
    trial_record,
)
from ..tools.dashboard import save_study_notes
from ..worker import record_run, run_artifact_dir, start_workers, wait_workers
from .exits import EXIT_INTERRUPTED, EXIT_OK
from .progress import TrialProgress, format_metric
from .worker import add_heartbeat_options, set_torch_threads, threads_per_worker


def _summary(trial: FrozenTrial) -> str:
    cand = trial.user_attrs.get("candidate") or {}
    stages = cand.get("stages") or []
    arch = get_family(cand["family"]).describe(cand) if cand.get("family") in family_names() else "?"
    comp = " ".join(f"p{s['prune_ratio']:g}/r{s['rank_ratio']:g}/w{s['weight_bits']}a{s['act_bits']}" for s in stages)
    return f"{arch} | {comp}"


def print_trials(study: optuna.Study, trials: list[FrozenTrial], as_json: bool, title: str) -> None:
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    if as_json:
        print(json.dumps([trial_record(t, names) for t in trials], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("state")
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("test acc", justify="right")
    table.add_column("candidate (stage: prune/rank/bits)")
    for t in trials:
        vals = [format_metric(n, v) for n, v in zip(names, t.values, strict=True)] if t.values else ["-"] * len(names)
        test = t.user_attrs.get("test_accuracy")
        extra = _summary(t) if t.user_attrs.get("candidate") else t.user_attrs.get("fail_reason", "")
        table.add_row(str(t.number), t.state.name, *vals, "-" if test is None else f"{test:.4f}", extra)
    Console(width=200).print(table)


def _checked_run(args: argparse.Namespace, config_path: Path) -> tuple[StudyConfig, str, Path, TaskData, Any]:
    """Every check a run can fail, before the storage is touched: config, output folder, data, device
    profile and latency table (`create_or_resume` then checks the sampler, the storage and the stored config
    before it creates anything). Returns the config, storage URL, artifact folder, task data and table."""
    config = load_config(config_path)
    config = apply_overrides(
        config,
        **{
            "study.storage": args.storage,
            "study.name": args.study_name,
            "study.seed": args.seed,
            "budget.n_trials": args.n_trials,
            "budget.timeout": args.timeout,
        },
    )
    resolve_device(config.pipeline.device)  # "cuda" where there is none: refused before any write
    if args.workers < 1:
        raise UserInputError(f"--workers must be at least 1 (got {args.workers})")
    if args.torch_threads is not None and args.torch_threads < 1:
        raise UserInputError(f"--torch-threads must be at least 1 (got {args.torch_threads})")
    url = resolve_storage(config, config_path)
    check_storage_folder(url)
    artifact_dir = run_artifact_dir(config, config_path, url, args.artifact_dir)
    output_dir(artifact_dir, "--artifact-dir" if args.artifact_dir else "artifact directory")
    task = load_task(config.task)
    check_family_input(config.space.family, task.input_shape)
    table = device_model(config, config_path)
    lut = getattr(table, "path", None)
    if lut is not None and not lut.exists():  # a table measured here is saved there after the first trial
        output_file(lut, "[device] lut", "lut.json")
    return config, url, artifact_dir, task, table


def cmd_run(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    config, url, artifact_dir, task, table = _checked_run(args, config_path)
    study = create_or_resume(config, url, heartbeat_s=args.heartbeat, grace_s=args.grace)
    print(f"study {config.study.name!r} on {mask_password(url)}", file=sys.stderr)
    record_run(study, config.budget.n_trials, artifact_dir)
    started = time.perf_counter()
    try:
        if args.workers > 1:  # K local `jointnas worker` processes share the study's global budget
            lut = lut_path(config, config_path)
            # K trainings on one host share its cores: cores // K torch threads each unless told otherwise.
            threads = args.torch_threads or threads_per_worker(args.workers)
            extra = ["--torch-threads", str(threads)]
            code = wait_workers(
                start_workers(
                    args.workers,
                    url,
                    config.study.name,
                    n_trials=config.budget.n_trials,
                    artifact_dir=artifact_dir,
                    lut=lut,
                    extra=extra + _worker_options(args, config.budget.timeout),
                )
            )
            if code != EXIT_OK:
                return code
        else:
            set_torch_threads(args.torch_threads)
            with TrialProgress(study, config.budget.n_trials) as progress:
                run_study(
                    config,
                    study,
                    config_path=config_path,
                    callbacks=[progress],
                    artifact_dir=artifact_dir,
                    task=task,
                    table=table,
                )
    except KeyboardInterrupt:
        print("interrupted: the running trial is marked FAIL; run again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    save_study_notes(study)  # the Pareto plot and summary note optuna-dashboard shows
    print(f"{n_complete(study)} complete trials in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print_trials(study, front(study), args.json, "Pareto front")
    return EXIT_OK


def _worker_options(args: argparse.Namespace, timeout: float | None) -> list[str]:
    """The options ``run --workers K`` passes on to each worker."""
    extra = ["--heartbeat", str(args.heartbeat)] + (["--grace", str(args.grace)] if args.grace else [])
    return extra + (["--timeout", str(timeout)] if timeout else [])


def _open(args: argparse.Namespace) -> optuna.Study:
    return load_study(open_storage(args.storage, must_exist=True), args.study_name)


def cmd_pareto(args: argparse.Namespace) -> int:
    study = _open(args)
    print_trials(study, front(study), args.json, f"Pareto front of {args.study_name}")
    return EXIT_OK


def cmd_trials(args: argparse.Namespace) -> int:
    study = _open(args)
    print_trials(study, study.get_trials(deepcopy=False), args.json, f"Trials of {args.study_name}")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run (or resume) the study a config file describes")
    run.add_argument("config", help="study file (TOML)")
    run.add_argument("--storage", help="storage URL (default: [study] storage, else SQLite next to CONFIG)")
    run.add_argument("--study-name")
    run.add_argument("--n-trials", type=int, help="COMPLETE trials the study should hold")
    run.add_argument("--timeout", type=float, help="seconds")
    run.add_argument("--seed", type=int)
    run.add_argument("--json", action="store_true", help="print the final front as JSON")
    run.add_argument("--workers", type=int, default=1, help="local worker processes sharing the budget")
    run.add_argument(
        "--torch-threads",
        type=int,
        help="torch intra-op threads of each worker (default: cores // workers with --workers K > 1, at least 1; "
        "torch's default with one worker)",
    )
    run.add_argument("--artifact-dir", help="where trials store ONNX models and summaries")
    add_heartbeat_options(run)
    run.set_defaults(func=cmd_run)

    for name, func, text in (
        ("pareto", cmd_pareto, "print the Pareto front of a study"),
        ("trials", cmd_trials, "list all trials of a study"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--storage", required=True)
        p.add_argument("--study-name", required=True)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
