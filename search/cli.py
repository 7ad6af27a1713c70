"""The jointnas command line: run, pareto, trials, plus each command module search/cli_*.py.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pkgutil
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

import jointnas.search
from jointnas.objectives import load_task
from jointnas.spaces import UserInputError, check_family_input

from .config import apply_overrides, load_config
from .interrupts import redeliver_dropped_interrupts
from .progress import LiveDisplay, terminal_progress
from .storage import mask_password, open_storage
from .study import (
    create_or_resume,
    front,
    load_study,
    lut_path,
    n_complete,
    resolve_storage,
    run_study,
    trial_record,
)
from .worker import record_run, run_artifact_dir, start_workers, wait_workers

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130

_UNITS = {"accuracy": "{:.4f}", "latency_ms": "{:.4f}", "flash_bytes": "{:.0f}", "sram_bytes": "{:.0f}"}


def _fmt(metric: str, value: float) -> str:
    return _UNITS.get(metric, "{:.4g}").format(value)


def _summary(trial: FrozenTrial) -> str:
    cand = trial.user_attrs.get("candidate") or {}
    stages = cand.get("stages") or []
    if cand.get("family") == "mlp":
        arch = "mlp " + "-".join(str(s["channels"]) for s in stages)
    else:
        arch = "cnn " + " ".join(f"{s['channels']}x{s['depth']}k{s['kernel']}e{s['expansion']}" for s in stages)
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
        vals = [_fmt(n, v) for n, v in zip(names, t.values, strict=True)] if t.values else ["-"] * len(names)
        test = t.user_attrs.get("test_accuracy")
        extra = _summary(t) if t.user_attrs.get("candidate") else t.user_attrs.get("fail_reason", "")
        table.add_row(str(t.number), t.state.name, *vals, "-" if test is None else f"{test:.4f}", extra)
    Console(width=200).print(table)


class _Progress(LiveDisplay):
    """Live progress: trial k/N, elapsed time and the current best trade-offs.

    A rich progress bar on a terminal; one plain line per finished trial otherwise (logs, CI).
    """

    def __init__(self, study: optuna.Study, total: int) -> None:
        self.names = study.metric_names or []
        self.total = total
        self.started = time.perf_counter()
        self.progress = terminal_progress("trials")
        if self.progress is not None:
            self.task = self.progress.add_task("", total=total, completed=n_complete(study))

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        best = study.best_trials
        desc = f"front {len(best)}"
        if best and self.names:
            top = max(best, key=lambda t: t.values[0]) if self.names[0] == "accuracy" else best[0]
            desc += " | best " + ", ".join(f"{n}={_fmt(n, v)}" for n, v in zip(self.names, top.values, strict=True))
        if trial.state != TrialState.COMPLETE:
            reason = trial.user_attrs.get("fail_reason", "")
            desc += f" | #{trial.number} {trial.state.name.lower()} {reason}".rstrip()
        done = n_complete(study)
        if self.progress is not None:
            self.progress.update(self.task, completed=done, description=desc)
        else:
            elapsed = time.perf_counter() - self.started
            print(f"trial {done}/{self.total} [{elapsed:.0f} s] {desc}", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
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
    if args.workers < 1:
        raise UserInputError(f"--workers must be at least 1 (got {args.workers})")
    url = resolve_storage(config, config_path)
    # Missing or malformed data, or a family that cannot take it: exit 2 before the storage is touched.
    task = load_task(config.task)
    check_family_input(config.space.family, task.input_shape)
    study = create_or_resume(config, url)
    print(f"study {config.study.name!r} on {mask_password(url)}", file=sys.stderr)
    artifact_dir = run_artifact_dir(config, config_path, url, args.artifact_dir)
    record_run(study, config.budget.n_trials, artifact_dir)
    started = time.perf_counter()
    try:
        if args.workers > 1:  # K local `jointnas worker` processes share the study's global budget
            lut = lut_path(config, config_path)
            code = wait_workers(
                start_workers(
                    args.workers,
                    url,
                    config.study.name,
                    n_trials=config.budget.n_trials,
                    artifact_dir=artifact_dir,
                    lut=lut,
                    extra=["--timeout", str(config.budget.timeout)] if config.budget.timeout else None,
                )
            )
            if code != EXIT_OK:
                return code
        else:
            with _Progress(study, config.budget.n_trials) as progress:
                run_study(
                    config,
                    study,
                    config_path=config_path,
                    callbacks=[progress],
                    artifact_dir=artifact_dir,
                    task=task,
                )
    except KeyboardInterrupt:
        print("interrupted: the running trial is marked FAIL; run again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{n_complete(study)} complete trials in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print_trials(study, front(study), args.json, "Pareto front")
    return EXIT_OK


def _open(args: argparse.Namespace) -> optuna.Study:
    return load_study(open_storage(args.storage), args.study_name)


def cmd_pareto(args: argparse.Namespace) -> int:
    study = _open(args)
    print_trials(study, front(study), args.json, f"Pareto front of {args.study_name}")
    return EXIT_OK


def cmd_trials(args: argparse.Namespace) -> int:
    study = _open(args)
    print_trials(study, study.get_trials(deepcopy=False), args.json, f"Trials of {args.study_name}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jointnas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) the study a config file describes")
    run.add_argument("config", help="study file (TOML)")
    run.add_argument("--storage", help="storage URL (default: [study] storage, else SQLite next to CONFIG)")
    run.add_argument("--study-name")
    run.add_argument("--n-trials", type=int, help="COMPLETE trials the study should hold")
    run.add_argument("--timeout", type=float, help="seconds")
    run.add_argument("--seed", type=int)
    run.add_argument("--json", action="store_true", help="print the final front as JSON")
    run.add_argument("--workers", type=int, default=1, help="local worker processes sharing the budget")
    run.add_argument("--artifact-dir", help="where trials store ONNX models and summaries")
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

    # Further commands live in their own modules, `search/cli_<topic>.py`, each exposing
    # `add_parser(subparsers)`; discovering them keeps this file from becoming a grab-bag.
    for info in sorted(pkgutil.iter_modules(jointnas.search.__path__), key=lambda m: m.name):
        if info.name.startswith("cli_"):
            importlib.import_module(f"jointnas.search.{info.name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    redeliver_dropped_interrupts()  # a Ctrl-C landing in a finalizer still stops the run
    # Optuna logs failed trials with tracebacks; our progress line reports each failure's reason instead.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except UserInputError as exc:
        print(f"error: {mask_password(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit(code: int) -> None:
    """Leave the process with ``code``.

    After a handled Ctrl-C the process leaves at once (``os._exit``, streams flushed): in about one run
    in four the interpreter otherwise ended with status -2 (killed by SIGINT at shutdown) although the
    interrupt had been handled and reported, which scripts waiting for 130 misread. Everything the study
    holds is committed by then.
    """
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _entry() -> Any:  # pragma: no cover
    _exit(main())


if __name__ == "__main__":  # pragma: no cover
    _exit(main())
