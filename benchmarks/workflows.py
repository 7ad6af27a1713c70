"""Workflow benchmark: `jointnas compare` (post / aware / aware-finetune) on digits and MNIST-1D.

Writes benchmarks/results/workflows.json and one PNG per task (benchmarks/results/workflows-TASK.png).
Every workflow gets the same number of search trials; budgets are scaled to a shared 2-core machine.

Usage: python benchmarks/workflows.py [--quick] [--n-trials N] [--tasks digits,mnist1d]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from jointnas.search.config import StudyConfig, apply_overrides, load_config, parse_config
from jointnas.search.study import versions
from jointnas.search.tools.compare import write_png
from jointnas.search.tools.workflows import WORKFLOWS, post_plan, run_workflow, stage_configs, summarize
from jointnas.spaces import UserInputError

ROOT = Path(__file__).resolve().parents[1]

MNIST1D = {
    "study": {"name": "mnist1d", "seed": 0},
    "task": {"dataset": "mnist1d"},
    "space": {
        "family": "cnn1d",
        "stages": [16, 24, 32],
        "strides": [1, 2, 2],
        "min_stages": 1,
        "depth": [1, 2],
        "width_mult": [0.5, 0.75, 1.0],
        "kernel": [3, 5],
        "expansion": [2, 4],
        "stem_channels": [8, 16],
        "compression": {
            "prune_ratio": [0.0, 0.5],
            "prune_step": 0.125,
            "rank_ratio": [0.5, 1.0],
            "rank_step": 0.25,
            "weight_bits": [2, 4, 8, 32],
            "act_bits": [8, 32],
            "head_bits": [8],
        },
    },
    "pipeline": {"train_epochs": 10, "finetune_epochs": 3},
    "constraints": {"flash_bytes": 16384},
    "sampler": {"name": "nsga2", "options": {"population_size": 6}},
}


def task_configs(quick: bool, n_trials: int) -> dict[str, StudyConfig | str]:
    """The study config of each task (or why it is unavailable in this build)."""
    epochs = {"pipeline.train_epochs": 2, "pipeline.finetune_epochs": 1} if quick else {}
    out: dict[str, StudyConfig | str] = {}
    digits = load_config(ROOT / "studies/quickstart.toml")
    digits = apply_overrides(
        digits,
        **{"study.name": "digits", "budget.n_trials": n_trials, "sampler.options": {"population_size": 6}, **epochs},
    )
    out["digits"] = digits
    try:
        cfg = parse_config(MNIST1D, "benchmarks/workflows.py MNIST1D")
        out["mnist1d"] = apply_overrides(cfg, **{"budget.n_trials": n_trials, **epochs})
    except UserInputError as exc:
        out["mnist1d"] = f"not run: this build has no MNIST-1D task ({exc})"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 trials, 2+1 epochs, digits only")
    parser.add_argument("--n-trials", type=int, default=None, help="search trials per workflow (default 20)")
    parser.add_argument("--tasks", default="digits,mnist1d")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/workflows[-quick].json)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials = args.n_trials or (3 if args.quick else 20)
    tasks = [t for t in args.tasks.split(",") if t]
    if args.quick:
        tasks = tasks[:1]
    suffix = "-quick" if args.quick else ""
    out_path = Path(args.out or ROOT / f"benchmarks/results/workflows{suffix}.json")
    results: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/workflows.py", *sys.argv[1:]]),
        "n_trials_per_workflow": n_trials,
        "workflows": {
            "post": "NAS on the uncompressed space (train only, no constraints), then each front architecture "
            "retrained and compressed with one fixed plan, no fine-tuning after compression",
            "aware": "joint architecture + compression search, no fine-tuning after compression",
            "aware-finetune": "joint search with the full pipeline (fine-tune / QAT after each compression step)",
        },
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),  # above ~2: other jobs shared the 2 cores
        "notes": "accuracies are validation accuracy "
        "(search objective) unless named test; hypervolume over (accuracy, latency_ms, flash_bytes) of "
        "feasible models, normalized, reference point fixed per task (accuracy 0, 1.1 x worst cost)",
        "tasks": {},
        "versions": versions(),
    }
    configs = task_configs(args.quick, n_trials)
    for task in tasks:
        config = configs.get(task)
        if config is None:
            results["tasks"][task] = {"status": f"unknown task {task!r}"}
            continue
        if isinstance(config, str):
            results["tasks"][task] = {"status": config, "command": results["command"]}
            print(f"{task}: {config}", flush=True)
            continue
        work = Path(tempfile.mkdtemp(prefix=f"jointnas-wf-{task}-"))
        config_path = work / f"{task}.toml"  # the latency table lands next to it (fresh per task)
        url = f"sqlite:///{work / 'compare.db'}"
        runs, times = [], {}
        for name in WORKFLOWS:
            stage_configs(config, name)
            t0 = time.perf_counter()
            runs.append(run_workflow(config, name, url, config_path=config_path))
            times[name] = round(time.perf_counter() - t0, 1)
            print(f"{task} {name}: {times[name]} s", flush=True)
        summary = summarize(runs)
        png = out_path.parent / f"workflows-{task}{suffix}.png"
        write_png(summary, png, f"{task}: {n_trials} search trials per workflow")
        results["tasks"][task] = {
            "status": "run",
            "command": results["command"],
            "config": json.loads(config.model_dump_json()),
            "post_plan": post_plan(config),
            "elapsed_s": times,
            "png": str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png),
            **summary,
        }
        shutil.rmtree(work, ignore_errors=True)
        for row in summary["table"]:
            print(
                f"  {row['workflow']:>15}: HV {row['hypervolume']:.4f} best feasible val "
                f"{row['best_feasible_val_accuracy']} test {row['best_feasible_test_accuracy']} "
                f"({row['wall_time_s']:.0f} s)",
                flush=True,
            )
        print(f"  winner: {summary['winner']}", flush=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.exists():  # tasks run by an earlier invocation (e.g. one task per process) are kept
        earlier = json.loads(out_path.read_text()).get("tasks", {})
        results["tasks"] = {**{k: v for k, v in earlier.items() if k not in results["tasks"]}, **results["tasks"]}
    out_path.write_text(json.dumps(results, indent=2))
    print(f"written to {out_path}")


if __name__ == "__main__":
    main()
