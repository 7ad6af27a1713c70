"""Tasks benchmark: a 20-trial MNIST-1D study, plus 3 trials of every study file on tiny generated data.

MNIST-1D goal: the best trial (highest validation accuracy) reaches >= 85 % test accuracy.
Writes benchmarks/results/tasks.json. Usage: python benchmarks/tasks.py [--quick] [--n-trials N]
(--quick: 3 MNIST-1D trials of 1 epoch, to check that the script runs).
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
from optuna.trial import TrialState

from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, front, run_study, versions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.datafiles import write_cifar_batches, write_pairs  # noqa: E402  (tiny files in the real formats)

GOAL_TEST_ACCURACY = 0.85
TINY = {
    "pipeline.train_epochs": 1,
    "pipeline.finetune_epochs": 1,
    "device.warmup": 1,
    "device.repeats": 3,
    "device.threads": 1,
    "budget.n_trials": 3,
}


def run_file(name: str, work: Path, overrides: dict[str, Any]) -> tuple[optuna.Study, float]:
    """Run studies/``name`` with ``overrides`` in a fresh folder (new storage and latency table)."""
    folder = work / Path(name).stem
    folder.mkdir()
    config_path = folder / name
    shutil.copy(ROOT / "studies" / name, config_path)
    config = apply_overrides(load_config(config_path), **overrides)
    study = create_or_resume(config, f"sqlite:///{folder / 'study.db'}")
    started = time.perf_counter()
    run_study(config, study, config_path=config_path)
    return study, time.perf_counter() - started


def summary(study: optuna.Study, wall_s: float) -> dict[str, Any]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = max(complete, key=lambda t: t.user_attrs["val_accuracy"], default=None)
    return {
        "trials_complete": len(complete),
        "trials_total": len(study.trials),
        "wall_time_s": round(wall_s, 1),
        "mean_trial_s": round(sum(t.user_attrs["timings_s"]["total_s"] for t in complete) / max(1, len(complete)), 1),
        "best_val_trial": None
        if best is None
        else {
            "number": best.number,
            "val_accuracy": best.user_attrs["val_accuracy"],
            "test_accuracy": best.user_attrs["test_accuracy"],
            "flash_bytes": best.user_attrs["flash_bytes"],
            "sram_bytes": best.user_attrs["sram_bytes"],
            "latency_ms": best.user_attrs["latency_ms"],
            "params": best.params,
        },
        "max_test_accuracy": max((t.user_attrs["test_accuracy"] for t in complete), default=None),
        "feasible_trials": sum(bool(t.user_attrs.get("feasible")) for t in complete),
        "front": [
            {"number": t.number, "values": dict(zip(study.metric_names, t.values, strict=True))} for t in front(study)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 one-epoch MNIST-1D trials (smoke test)")
    parser.add_argument("--n-trials", type=int, default=None, help="MNIST-1D trials (default: the study file's 20)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/tasks.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="jointnas-tasks-"))
    result: dict[str, Any] = {"quick": args.quick, "cpu_count": os.cpu_count()}

    mnist = dict(TINY) if args.quick else {}
    if args.n_trials:
        mnist["budget.n_trials"] = args.n_trials
    study, wall = run_file("mnist1d_mcu.toml", work, mnist)
    result["mnist1d_mcu"] = summary(study, wall)
    best = result["mnist1d_mcu"]["best_val_trial"]
    result["mnist1d_goal"] = {
        "best_trial_test_accuracy": None if best is None else best["test_accuracy"],
        "goal": GOAL_TEST_ACCURACY,
        "met": best is not None and best["test_accuracy"] >= GOAL_TEST_ACCURACY,
    }
    print(json.dumps({"mnist1d_mcu": {k: v for k, v in result["mnist1d_mcu"].items() if k != "front"}}, indent=2))

    data = work / "data"
    cifar = write_cifar_batches(data / "cifar-10-batches-py", per_batch=20, batches=2, test=20)
    pairs = write_pairs(data / "tinychat.txt.gz", repeat=3)
    # mnist1d_mcu.toml itself ran above; these show the other files run on files in the real formats.
    tiny_runs = {
        "cifar10_rpi.toml": {"task.path": str(cifar), "task.val_fraction": 0.25, "pipeline.batch_size": 16},
        "tinychat_arduino.toml": {"task.path": str(pairs)},
    }
    (work / "tiny").mkdir()
    for name, overrides in tiny_runs.items():
        study, wall = run_file(name, work / "tiny", {**TINY, **overrides})
        s = summary(study, wall)
        result[f"tiny_{Path(name).stem}"] = {k: s[k] for k in ("trials_complete", "trials_total", "wall_time_s")}
        print(name, result[f"tiny_{Path(name).stem}"])

    # The tinychat study file as shipped (its 51-pair sample, its epochs), 3 trials: next-character accuracy.
    (work / "sample").mkdir()
    sample = {"task.path": str(ROOT / "studies/data/tinychat_sample.txt"), "budget.n_trials": 1 if args.quick else 3}
    study, wall = run_file("tinychat_arduino.toml", work / "sample", sample)
    result["tinychat_arduino_sample"] = summary(study, wall)
    print("tinychat sample", {k: v for k, v in result["tinychat_arduino_sample"].items() if k != "front"})

    result["notes"] = (
        "measured while other jobs shared the 2-core machine; tiny_* runs use 1 epoch on tiny generated files "
        "in the real formats (two CIFAR pickle batches, a gzipped pairs file) and only show the files run; "
        "tinychat_arduino_sample runs the study file as shipped on its 51-pair sample (next-character accuracy)"
    )
    result["versions"] = versions()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result["mnist1d_goal"], indent=2))
    print(f"written to {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
