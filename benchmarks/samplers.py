"""Sampler benchmark: hypervolume of the (accuracy, latency, Flash) front vs wall time, per sampler.

Runs the quickstart study (and MNIST-1D when that task is registered) from scratch with each sampler
and seed, records after every finished trial the wall time since the study started and the
hypervolume (HV) of the feasible trials so far, with one reference point per task shared by every
sampler and seed. Supernet samplers pay their training inside the timed run (first trial). Writes
benchmarks/results/samplers.json.

Usage: python benchmarks/samplers.py [--quick] [--seeds 0 1 2] [--n-trials N] [--samplers ...]

Samplers are registered in ``SAMPLERS`` (name → (sampler name, options)); hardcore adds itself there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.trial import FrozenTrial, TrialState

from jointnas.objectives.tasks import _TASKS
from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, run_study, versions

ROOT = Path(__file__).resolve().parents[1]

SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "tpe": ("tpe", {}),
    "nsga2": ("nsga2", {"population_size": 8}),
    "dnas": ("dnas", {"lambdas": [0.0, 0.3, 1.0, 3.0], "epochs": 3, "warmup_epochs": 1}),
}

# Task → overrides of studies/quickstart.toml. MNIST-1D runs only where the task is registered.
TASKS: dict[str, dict[str, Any]] = {
    "digits": {},
    "mnist1d": {"task.dataset": "mnist1d"},
}


def hypervolume(points: list[tuple[float, float, float]], ref: np.ndarray) -> float:
    """HV of minimisation points (1 - accuracy, latency, Flash), each axis divided by ``ref`` (so HV ≤ 1)."""
    pts = np.array([p for p in points if all(v < r for v, r in zip(p, ref, strict=True))], dtype=float)
    if len(pts) == 0:
        return 0.0
    return float(compute_hypervolume(pts / ref, np.ones(3)))


def run_one(task: str, sampler: str, seed: int, args: argparse.Namespace, work: Path, lut: Path) -> dict[str, Any]:
    name, options = SAMPLERS[sampler]
    if sampler == "dnas" and args.quick:
        options = dict(options, epochs=2)
    config_path = work / f"{task}-{sampler}-{seed}.toml"
    shutil.copy(ROOT / "studies/quickstart.toml", config_path)
    overrides = {
        "study.seed": seed,
        "study.name": f"{task}-{sampler}-{seed}",
        "sampler.name": name,
        "sampler.options": options,
        "budget.n_trials": args.n_trials,
        "pipeline.train_epochs": args.train_epochs,
        "pipeline.finetune_epochs": args.finetune_epochs,
        "device.lut": str(lut),  # one table per task: every run prices a layer the same
        **TASKS[task],
    }
    config = apply_overrides(load_config(config_path), **overrides)
    study = create_or_resume(config, f"sqlite:///{work / (config.study.name + '.db')}")
    started = time.perf_counter()
    events: list[dict[str, Any]] = []

    def record(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE:
            return
        acc, lat, flash = trial.values
        events.append(
            {
                "t_s": round(time.perf_counter() - started, 2),
                "number": trial.number,
                "accuracy": acc,
                "latency_ms": lat,
                "flash_bytes": flash,
                "feasible": bool(trial.user_attrs.get("feasible", True)),
                "lambda": trial.user_attrs.get("dnas:lambda"),
            }
        )

    run_study(config, study, config_path=config_path, callbacks=[record])
    out: dict[str, Any] = {
        "task": task,
        "sampler": sampler,
        "seed": seed,
        "wall_time_s": round(time.perf_counter() - started, 2),
        "trials": events,
    }
    if sampler == "dnas":
        attrs = study.user_attrs
        out["supernet_train_s"] = attrs.get("dnas:train_s")
        out["alpha_entropy"] = attrs.get("dnas:alpha_entropy")
    return out


def curves(runs: list[dict[str, Any]], ref: np.ndarray) -> None:
    for run in runs:
        points: list[tuple[float, float, float]] = []
        curve = []
        for ev in run["trials"]:
            if ev["feasible"]:
                points.append((1.0 - ev["accuracy"], ev["latency_ms"], ev["flash_bytes"]))
            curve.append([ev["t_s"], round(hypervolume(points, ref), 5)])
        run["hv_curve"] = curve
        run["final_hv"] = curve[-1][1] if curve else 0.0


def time_to_reach(curve: list[list[float]], target: float) -> float | None:
    for t, hv in curve:
        if hv >= target - 1e-12:
            return t
    return None


def summarize(runs: list[dict[str, Any]], tasks: list[str], samplers: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for task in tasks:
        per: dict[str, Any] = {}
        for s in samplers:
            rs = [r for r in runs if r["task"] == task and r["sampler"] == s]
            hv = [r["final_hv"] for r in rs]
            wall = [r["wall_time_s"] for r in rs]
            per[s] = {
                "final_hv_mean": round(float(np.mean(hv)), 5),
                "final_hv_std": round(float(np.std(hv)), 5),
                "wall_time_s_mean": round(float(np.mean(wall)), 1),
            }
        goal = []
        for r in [r for r in runs if r["task"] == task and r["sampler"] == "nsga2"]:
            for other in [o for o in runs if o["task"] == task and o["seed"] == r["seed"] and o["sampler"] != "nsga2"]:
                t = time_to_reach(other["hv_curve"], r["final_hv"])
                goal.append(
                    {
                        "sampler": other["sampler"],
                        "seed": r["seed"],
                        "nsga2_final_hv": r["final_hv"],
                        "nsga2_wall_s": r["wall_time_s"],
                        "time_to_nsga2_final_hv_s": t,
                        "fraction_of_nsga2_wall": None if t is None else round(t / r["wall_time_s"], 3),
                    }
                )
        per["reach_nsga2_final_hv"] = goal
        summary[task] = per
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, 4 trials, 1 epoch: a smoke test")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/samplers.json"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_trials, args.train_epochs, args.finetune_epochs = [0], 4, 1, 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tasks = [t for t in args.tasks if TASKS[t].get("task.dataset", t) in _TASKS]
    skipped = sorted(set(args.tasks) - set(tasks))
    work = Path(tempfile.mkdtemp(prefix="jointnas-samplers-"))
    runs: list[dict[str, Any]] = []
    for task in tasks:
        lut = work / f"lut-{task}.json"
        for seed in args.seeds:
            for sampler in args.samplers:
                run = run_one(task, sampler, seed, args, work, lut)
                print(
                    f"{task} {sampler} seed={seed}: {run['wall_time_s']:.1f} s, {len(run['trials'])} trials", flush=True
                )
                runs.append(run)
    refs = {}
    for task in tasks:
        feas = [ev for r in runs if r["task"] == task for ev in r["trials"] if ev["feasible"]]
        ref = np.array([1.0, 1.1 * max(ev["latency_ms"] for ev in feas), 1.1 * max(ev["flash_bytes"] for ev in feas)])
        refs[task] = ref
        curves([r for r in runs if r["task"] == task], ref)
    result = {
        "what": "hypervolume of the feasible (1-accuracy, latency_ms, flash_bytes) front vs wall time",
        "config": "studies/quickstart.toml with the overrides below",
        "setup": {
            "seeds": args.seeds,
            "n_trials": args.n_trials,
            "train_epochs": args.train_epochs,
            "finetune_epochs": args.finetune_epochs,
            "samplers": {s: SAMPLERS[s] for s in args.samplers},
            "quick": args.quick,
            "reference_point": {t: [round(float(v), 6) for v in refs[t]] for t in tasks},
            "hv_normalisation": "each axis divided by the task's reference point (HV <= 1)",
            "tasks_run": tasks,
            "tasks_skipped": {t: "task not registered in this checkout" for t in skipped},
        },
        "summary": summarize(runs, tasks, args.samplers),
        "runs": runs,
        "notes": "measured while other jobs shared the 2-core machine; wall times include each sampler's own "
        "work (DNAS: supernet training in the first trial); one latency table per task shared by all runs "
        "(the first run measures the layers it meets)",
        "versions": versions(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    print(f"written to {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
