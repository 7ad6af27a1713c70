"""``jointnas compare``: the three workflows as sibling studies with equal trial budgets, and a report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from jointnas.objectives import load_task

from ..config import apply_overrides, load_config
from ..paths import output_dir
from ..storage import check_storage_folder, mask_password
from ..study import device_model, resolve_storage
from ..tools.compare import write_compare
from ..tools.workflows import WORKFLOWS, parse_workflows, run_workflow, stage_configs, summarize
from .progress import StepProgress


def cmd_compare(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    config = load_config(config_path)
    config = apply_overrides(
        config,
        **{"study.storage": args.storage, "budget.n_trials": args.n_trials, "study.seed": args.seed},
    )
    output_dir(args.out, "--out")
    workflows = parse_workflows(args.workflows)
    for name in workflows:
        stage_configs(config, name)  # validate every transform before any training
    url = resolve_storage(config, config_path)
    # Storage folder, data, device profile and latency table: refused before any sibling study is created.
    check_storage_folder(url)
    load_task(config.task)
    device_model(config, config_path)
    print(f"comparing {', '.join(workflows)} on {mask_password(url)}", file=sys.stderr)
    runs = []
    with StepProgress("compare", total=config.budget.n_trials * len(workflows)) as progress:
        last = [time.perf_counter()]

        def on_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            progress.mark(
                f"{study.study_name} #{trial.number} {trial.state.name.lower()}", time.perf_counter() - last[0]
            )
            last[0] = time.perf_counter()

        for name in workflows:
            runs.append(run_workflow(config, name, url, config_path=config_path, callbacks=[on_trial]))
    summary = summarize(runs)
    summary["config"] = str(config_path)
    summary["n_trials"] = config.budget.n_trials
    paths = write_compare(summary, Path(args.out), f"jointnas compare: {config.study.name}")
    for row in summary["table"]:
        acc = row["best_feasible_val_accuracy"]
        print(
            f"{row['workflow']:>15}: hypervolume {row['hypervolume']:.4f}, best feasible accuracy "
            f"{'-' if acc is None else f'{acc:.4f}'}, {row['wall_time_s']:.0f} s",
            file=sys.stderr,
        )
    print(f"report: {paths['html']} and {paths['png']}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="compare NAS-then-compress with compression-aware search (with/without fine-tune)"
    )
    p.add_argument("config", help="study file (TOML); its [study] name prefixes the sibling studies")
    p.add_argument("--out", required=True, help="folder for compare.json/.html/.md/.png")
    p.add_argument("--workflows", default=",".join(WORKFLOWS), help=f"comma-separated subset of {','.join(WORKFLOWS)}")
    p.add_argument("--storage", help="storage URL (default: [study] storage, else SQLite next to CONFIG)")
    p.add_argument("--n-trials", type=int, help="search trials per workflow (default: [budget] n_trials)")
    p.add_argument("--seed", type=int)
    p.set_defaults(func=cmd_compare)
