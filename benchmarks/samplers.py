"""Sampler benchmark: hypervolume of the (accuracy, latency, Flash) front vs wall time, per sampler.

Runs the quickstart study (and MNIST-1D when that task is registered) from scratch with each sampler
and seed, records after every finished trial the wall time since the study started and the
hypervolume (HV) of the feasible trials so far, with one reference point per task shared by every
sampler and seed. Supernet samplers pay their training inside the timed run (first trial). Writes
benchmarks/results/samplers.json.

Usage: python benchmarks/samplers.py [--quick] [--seeds 0 1 2] [--n-trials N] [--samplers ...]
                                     [--tasks digits mnist1d | mnist1d_costly]
                                     [--reuse FILE] [--lut-dir DIR] [--rank-correlation [--rank-only]]

Settings (``--tasks``, keys of ``summary``): ``digits`` and ``mnist1d`` (the quickstart study, 3-epoch
trials) by default; ``mnist1d_costly``: MNIST-1D with costly trials (20 training epochs, 3 per
fine-tune) where the supernet samplers inherit weights (``TASK_SAMPLER_OPTIONS``), the setting where
one-shot search is meant to pay. A run of one setting keeps the other settings' runs of ``--out``.

Samplers are registered in ``SAMPLERS`` (name → (sampler name, options)). ``--reuse FILE`` keeps the
runs of samplers not run now from an earlier JSON; top-level keys of the existing ``--out`` that this
invocation does not write (e.g. ``hardcore_rank_correlation``) are kept.

``--rank-correlation`` also measures, for HardCoReNAS, the rank correlation between inherited-weight
and trained-from-scratch accuracy of sub-networks of one supernet (``--rank-only``: only that).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna._hypervolume import compute_hypervolume
from optuna.trial import FrozenTrial, TrialState

from jointnas.devices import device_fingerprint
from jointnas.objectives.tasks import dataset_names
from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, run_study, versions

ROOT = Path(__file__).resolve().parents[1]

SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "tpe": ("tpe", {}),
    "nsga2": ("nsga2", {"population_size": 8}),
    "dnas": ("dnas", {"lambdas": [0.0, 0.1, 0.3, 1.0, 3.0], "epochs": 3, "warmup_epochs": 1}),
    # Inherited scoring: each trial starts from the supernet and trains the compute of 1 epoch of the
    # slowest sub-network (a k times faster one k epochs, at most train_epochs) instead of train_epochs;
    # TPE (multivariate) draws the compression knobs: with random ones HardCoReNAS ended below random search.
    # A Flash budget beside each latency budget (both schedules log-spaced over the space's range): with
    # latency budgets only, every MNIST-1D proposal took three stages and at least 3.9 KB (docs/samplers.md).
    "hardcore": (
        "hardcore",
        {
            "supernet_epochs": 15,
            "scoring": "inherited",
            "finetune_epochs": 1,
            "finetune_budget": "compute",
            "flash_budget": "range",
            "spacing": "log",
            "inner_sampler": "tpe",
        },
    ),
}

# Task (a benchmark setting) → overrides of studies/quickstart.toml: the same space, as 1-D convolutions
# for the MNIST-1D series. A setting's own epochs win over --train-epochs / --finetune-epochs.
TASKS: dict[str, dict[str, Any]] = {
    "digits": {},
    "mnist1d": {"task.dataset": "mnist1d", "space.family": "cnn1d"},
    # Where one-shot search is meant to pay (issue 18): costly trials (20 training epochs, 3 per
    # fine-tune), so a supernet trained once and inherited weights (a 3-epoch start) amortize.
    "mnist1d_costly": {
        "task.dataset": "mnist1d",
        "space.family": "cnn1d",
        "pipeline.train_epochs": 20,
        "pipeline.finetune_epochs": 3,
    },
}
#: Settings a plain invocation runs (``--tasks mnist1d_costly`` runs the costly one).
DEFAULT_TASKS = ["digits", "mnist1d"]

# (task, sampler) → options over SAMPLERS' for that setting: with costly trials both supernet samplers
# start their proposals from the supernet's weights (3 epochs instead of 20) and train it longer.
# DNAS's anchors span λ up to 10 there: with the quickstart grid (λ ≤ 3) its first passes ended at
# 0.9-1.7 KB of Flash and it reached NSGA-II's final HV in 0 of 3 seeds within 1/3 (docs/samplers.md).
TASK_SAMPLER_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("mnist1d_costly", "dnas"): {
        "epochs": 10,
        "warmup_epochs": 2,
        "scoring": "inherited",
        "finetune_epochs": 3,
        "lambdas": [0.0, 0.3, 1.0, 3.0, 10.0],
    },
    ("mnist1d_costly", "hardcore"): {"supernet_epochs": 30, "finetune_epochs": 3},
}

# Samplers that cannot search a task's space (none since HardCoReNAS covers cnn1d too).
UNSUPPORTED: dict[tuple[str, str], str] = {}


def hypervolume(points: list[tuple[float, float, float]], ref: np.ndarray) -> float:
    """HV of minimisation points (1 - accuracy, latency, Flash), each axis divided by ``ref`` (so HV ≤ 1)."""
    pts = np.array([p for p in points if all(v < r for v, r in zip(p, ref, strict=True))], dtype=float)
    if len(pts) == 0:
        return 0.0
    return float(compute_hypervolume(pts / ref, np.ones(3)))


def run_one(task: str, sampler: str, seed: int, args: argparse.Namespace, work: Path, lut: Path) -> dict[str, Any]:
    name, options = SAMPLERS[sampler]
    extra = TASK_SAMPLER_OPTIONS.get((task, sampler), {})
    task_overrides = dict(TASKS[task])
    if args.quick:  # a smoke test keeps its 1-epoch trials and short supernet training in every setting
        task_overrides = {k: v for k, v in task_overrides.items() if not k.startswith("pipeline.")}
        extra = {k: v for k, v in extra.items() if k == "scoring"}
    options = {**options, **extra}
    if sampler == "dnas" and args.quick:
        options = dict(options, epochs=2)
    if sampler == "hardcore" and args.quick:
        options = dict(options, supernet_epochs=2, score_samples=16)
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
        **task_overrides,
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
                "budget_ms": trial.user_attrs.get("hardcore:budget_ms"),
            }
        )

    load_before = os.getloadavg()[0]
    run_study(config, study, config_path=config_path, callbacks=[record])
    out: dict[str, Any] = {
        "task": task,
        "sampler": sampler,
        "seed": seed,
        "wall_time_s": round(time.perf_counter() - started, 2),
        # 1-minute load average before and after: above ~2 other jobs shared the 2 cores.
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": device_fingerprint(),  # HVs and wall times compare within one machine only
        "trials": events,
    }
    out["train_epochs"] = config.pipeline.train_epochs
    out["sampler_options"] = {k: v for k, v in options.items() if k != "artifact_store"}
    if sampler == "dnas":
        attrs = study.user_attrs
        out["supernet_train_s"] = attrs.get("dnas:train_s")
        out["supernet_train_s_here"] = attrs.get("dnas:supernet_train_s")
        out["alpha_entropy"] = attrs.get("dnas:alpha_entropy")
    if sampler == "hardcore":
        record = study.user_attrs.get("hardcore:supernet") or {}
        out["supernet_train_s"] = record.get("train_s")
        out["supernet_train_s_here"] = study.user_attrs.get("hardcore:supernet_train_s")
        out["trials_failed"] = sum(t.state == TrialState.FAIL for t in study.trials)
        out["budget_violations"] = sum(
            t.user_attrs["fp32_latency_ms"] > t.user_attrs["hardcore:budget_ms"] + 1e-12
            for t in study.trials
            if t.state == TrialState.COMPLETE
        )
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
            if not rs:  # e.g. a sampler that cannot search this task's space
                continue
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


#: Issue 18's goal for the supernet samplers, judged by `acceptance` and quoted by the docs and README.
GOAL_SAMPLERS = ("dnas", "hardcore")
GOAL_SHARE = 1 / 3  # of NSGA-II's wall time
GOAL_SEEDS = 2 / 3  # share of seeds that must reach NSGA-II's final HV within GOAL_SHARE


def acceptance(summary: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 18's acceptance from ``summary``: reach per task and sampler, HardCoReNAS vs random, budgets."""
    reach: dict[str, dict[str, Any]] = {}
    for task, per in summary.items():
        reach[task] = {}
        for sampler in [s for s in GOAL_SAMPLERS if s in per]:
            rows = [r for r in per["reach_nsga2_final_hv"] if r["sampler"] == sampler]
            shares = [r["fraction_of_nsga2_wall"] for r in rows]
            fast = sum(f is not None and f <= GOAL_SHARE for f in shares)
            met = bool(rows) and fast >= GOAL_SEEDS * len(rows) - 1e-9
            reach[task][sampler] = {"seeds_met": fast, "seeds": len(rows), "met": met, "shares": shares}
    vs_random = {}
    for task, per in summary.items():  # a task HardCoReNAS did not run on misses this point
        hv = per.get("hardcore", {}).get("final_hv_mean")
        base = per.get("random", {}).get("final_hv_mean")
        vs_random[task] = {"hardcore": hv, "random": base, "met": None not in (hv, base) and hv >= base}
    violations = sum(r.get("budget_violations", 0) for r in runs if r["sampler"] == "hardcore")
    met_on = {s: [t for t in reach if reach[t].get(s, {}).get("met")] for s in GOAL_SAMPLERS}
    return {
        "goal": "DNAS and HardCoReNAS each reach NSGA-II's final HV within 1/3 of NSGA-II's wall time in >= 2/3 "
        "of the seeds on at least one task; HardCoReNAS's final HV >= random's on every task; "
        "0 HardCoReNAS trials over their latency budget",
        "reach": reach,
        "reach_met_on": met_on,
        "hardcore_vs_random": vs_random,
        "hardcore_budget_violations": violations,
        "met": all(met_on.values()) and all(v["met"] for v in vs_random.values()) and violations == 0,
    }


DOC = ROOT / "docs/samplers.md"
DOC_BEGIN = "<!-- begin: written by benchmarks/samplers.py from samplers.json -->"
DOC_END = "<!-- end: written by benchmarks/samplers.py -->"
LABELS = {"random": "random", "tpe": "TPE", "nsga2": "NSGA-II", "dnas": "DNAS", "hardcore": "HardCoReNAS"}


def _share(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    t = row["time_to_nsga2_final_hv_s"]
    return "not reached" if t is None else f"{t:.0f} s ({row['fraction_of_nsga2_wall']:.2f})"


def _hv(value: float | None) -> str:
    """A final HV for the verdict; ``None`` is a sampler the invocation did not run (`--samplers hardcore`)."""
    return "not run" if value is None else format(value, ".3f")


def _first_trials(runs: list[dict[str, Any]], goal: list[str]) -> str:
    """When the supernet samplers' first trials finished, and HardCoReNAS's failed and over-budget trials."""
    firsts = []
    for s in goal:
        t = [r["trials"][0]["t_s"] for r in runs if r["sampler"] == s and r["trials"]]
        firsts.append(f"{LABELS[s]} {min(t):.1f}–{max(t):.1f} s")
    line = "First finished trial (supernet training included): " + ", ".join(firsts) + "."
    hard = [r for r in runs if r["sampler"] == "hardcore"]
    if hard:
        line += (
            f" HardCoReNAS: {sum(r['trials_failed'] for r in hard)} failed trials and "
            f"{sum(r['budget_violations'] for r in hard)} over their latency budget in {len(hard)} studies."
        )
    return line


def doc_task(task: str, result: dict[str, Any]) -> list[str]:
    """One setting's tables: final HV and wall time per sampler, then per seed the reach of NSGA-II's HV."""
    per = result["summary"][task]
    runs = [r for r in result["runs"] if r["task"] == task]
    ref = result["setup"]["reference_point"][task]
    loads = [v for r in runs for v in r.get("load_avg_1m", [])]
    cpus = sorted({r["machine"]["cpu"] for r in runs if "machine" in r})  # runs before it was recorded: none
    where = f"; {' and '.join(cpus)}" if cpus else ""
    if len(cpus) > 1:
        where += " (**mixed machines**)"
    ov = result["setup"]["task_overrides"].get(task, {})
    epochs = (runs[0]["train_epochs"], ov.get("pipeline.finetune_epochs", result["setup"]["finetune_epochs"]))
    lines = [
        f"**{task}** ({epochs[0]} training and {epochs[1]} fine-tune epoch(s) per trial; reference point 1, "
        f"{ref[1]:.4g} ms, {ref[2]:,.0f} B; 1-minute load average {min(loads):.1f}–{max(loads):.1f}{where}):",
        "",
        "| sampler | final HV (mean ± std) | wall time (s, mean) | supernet training (s, per study) |",
        "|---|---|---|---|",
    ]
    for s in [s for s in SAMPLERS if s in per]:
        train = [r["supernet_train_s_here"] for r in runs if r["sampler"] == s and r.get("supernet_train_s_here")]
        span = f"{min(train):.1f}–{max(train):.1f}" if train else "—"
        lines.append(
            f"| {LABELS[s]} | {per[s]['final_hv_mean']:.3f} ± {per[s]['final_hv_std']:.3f} "
            f"| {per[s]['wall_time_s_mean']:.0f} | {span} |"
        )
    goal = [s for s in GOAL_SAMPLERS if s in per]
    lines += [
        "",
        _first_trials(runs, goal),
        "",
        "| seed | NSGA-II final HV | NSGA-II wall (s) | "
        + " | ".join(f"{LABELS[s]} final HV | {LABELS[s]} reaches NSGA-II's HV at (share of its wall)" for s in goal)
        + " |",
    ]
    lines.append("|---|---|---|" + "---|---|" * len(goal))
    for nsga in sorted((r for r in runs if r["sampler"] == "nsga2"), key=lambda r: r["seed"]):
        cells = [str(nsga["seed"]), f"{nsga['final_hv']:.3f}", f"{nsga['wall_time_s']:.0f}"]
        for s in goal:
            run = next((r for r in runs if r["sampler"] == s and r["seed"] == nsga["seed"]), None)
            row = next(
                (g for g in per["reach_nsga2_final_hv"] if g["sampler"] == s and g["seed"] == nsga["seed"]), None
            )
            cells += ["—" if run is None else f"{run['final_hv']:.3f}", _share(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def doc_section(result: dict[str, Any]) -> str:
    """The benchmark's measured part of docs/samplers.md: setup, issue 18's verdict and one block per setting."""
    setup, acc = result["setup"], result["acceptance"]
    verdict = []
    for s in GOAL_SAMPLERS:
        parts = [
            f"{t} {acc['reach'][t][s]['seeds_met']}/{acc['reach'][t][s]['seeds']}"
            for t in acc["reach"]
            if s in acc["reach"][t]
        ]
        verdict.append(f"{LABELS[s]}: " + ", ".join(parts) + (" (met)" if acc["reach_met_on"][s] else " (**missed**)"))

    random_parts = [
        f"{t}: {_hv(v['hardcore'])} vs {_hv(v['random'])}" + ("" if v["met"] else " (**missed**)")
        for t, v in acc["hardcore_vs_random"].items()
    ]
    lines = [
        DOC_BEGIN,
        f"{setup['n_trials']} trials per study, seeds {', '.join(map(str, setup['seeds']))}, "
        f"{setup['torch_threads']} torch thread(s); hypervolume (HV) of the feasible (1 − accuracy, latency, Flash) "
        "points, each axis divided by the setting's reference point (HV ≤ 1). Sampler options are in the JSON "
        "(`setup.samplers`, `setup.task_sampler_options`).",
        "",
        "**Goal** (issue 18): DNAS and HardCoReNAS each reach NSGA-II's final HV within ⅓ of NSGA-II's wall time "
        "in ≥ 2 of 3 seeds on at least one setting; seeds that did, per setting — " + "; ".join(verdict) + ". "
        "HardCoReNAS's final HV against random search's — " + "; ".join(random_parts) + ". "
        f"HardCoReNAS trials over their latency budget: {acc['hardcore_budget_violations']}. "
        + ("**Met.**" if acc["met"] else "**Not met.**"),
        "",
    ]
    for task in result["summary"]:
        lines += doc_task(task, result)
    return "\n".join(lines + [DOC_END])


def write_doc(result: dict[str, Any], path: Path = DOC) -> None:
    """Replace the part of ``path`` between DOC_BEGIN and DOC_END with `doc_section`."""
    text = path.read_text()
    head, rest = text.split(DOC_BEGIN, 1)
    tail = rest.split(DOC_END, 1)[1]
    path.write_text(head + doc_section(result) + tail)


def hardcore_rank_correlation(args: argparse.Namespace) -> dict[str, Any]:
    """Inherited-weight vs trained-from-scratch accuracy of sub-networks of one HardCoReNAS supernet.

    Trains the supernet once (as `HardCoReNASSampler` does), picks ``--rank-subnets`` sub-networks
    spread over the LUT latency range, and measures each one's validation accuracy (a) with inherited
    weights (BN recalibrated on the batch), (b) inherited + ``--finetune-epochs`` of fine-tuning and
    (c) trained from scratch for ``--train-epochs`` (mean of two seeds); reports Spearman and Kendall.
    """
    from scipy.stats import kendalltau, spearmanr

    from jointnas.compression import TrainConfig, accuracy, train
    from jointnas.devices import LatencyTable
    from jointnas.objectives import TaskConfig, load_task
    from jointnas.search.samplers import _hardcore_supernet as sn
    from jointnas.search.samplers._hardcore_fw import ScoreModel
    from jointnas.search.samplers._hardcore_latency import SpaceChoices
    from jointnas.spaces import build_model

    config = load_config(ROOT / "studies/quickstart.toml")
    task = load_task(TaskConfig(**config.task.model_dump()))
    choices = SpaceChoices.from_space(config.space)
    macro = choices.max_macro()
    seed = args.seeds[0]
    fixed = {"width_mult": macro.width_mults[0], "stem_channels": macro.stem_channels}  # the paper's fixed macro
    net = sn.build_supernet(choices, task.input_shape, task.num_classes, seed, **fixed)
    info = sn.train_supernet(
        net, task.x_train, task.y_train, epochs=args.supernet_epochs, batch_size=64, lr=5e-3, sandwich=True, seed=seed
    )
    table = LatencyTable(None, warmup=3, repeats=5)
    lat = sn.latency_model(net, choices, macro, table)
    rng = np.random.default_rng(seed)
    pool = [sn.random_arch(choices, macro, rng) for _ in range(200)]
    pool.sort(key=lambda a: lat.arch_ms(a.choices, a.depths))
    picks = [pool[int(i)] for i in np.linspace(0, len(pool) - 1, args.rank_subnets)]
    # The sampler's proxy, fitted as in HardCoReNASSampler (48 sampled paths).
    fit_archs = [sn.random_arch(choices, macro, rng) for _ in range(48)]
    scores = ScoreModel.fit(choices, fit_archs, sn.path_losses(net, choices, fit_archs, task.x_val, task.y_val))
    rows = []
    t0 = time.perf_counter()
    for i, arch in enumerate(picks):
        candidate = choices.candidate(arch, task.input_shape, task.num_classes)
        with torch.no_grad(), sn.batch_statistics(net):  # inherited weights, BN recalibrated on the batch
            inherited = float((net(task.x_val, sn.path_choice(choices, arch)).argmax(1) == task.y_val).float().mean())
        model = sn.inherit(net, choices, candidate)
        gen = torch.Generator().manual_seed(seed)
        train(model, task.x_train, task.y_train, TrainConfig(epochs=args.finetune_epochs, lr=3e-3), generator=gen)
        finetuned = accuracy(model, task.x_val, task.y_val)
        scratch = []
        for s in (seed, seed + 1):
            torch.manual_seed(s)
            model = build_model(candidate)
            gen = torch.Generator().manual_seed(s)
            train(model, task.x_train, task.y_train, TrainConfig(epochs=args.rank_scratch_epochs), generator=gen)
            scratch.append(accuracy(model, task.x_val, task.y_val))
        rows.append(
            {
                "params": choices.arch_params(arch),
                "lut_latency_ms": round(lat.arch_ms(arch.choices, arch.depths), 5),
                "inherited_val_accuracy": round(inherited, 4),
                "inherited_finetuned_val_accuracy": round(finetuned, 4),
                "scratch_val_accuracy": round(float(np.mean(scratch)), 4),
                "scratch_val_accuracy_seeds": [round(a, 4) for a in scratch],
                "proxy_loss": round(scores.arch_loss(arch), 4),
            }
        )
        print(f"rank sub-network {i + 1}/{len(picks)}: {rows[-1]}", flush=True)
    scratch = [r["scratch_val_accuracy"] for r in rows]
    quality = hardcore_search_quality(lat, scores, seed=seed)

    def corr(xs: list[float]) -> dict[str, float]:
        return {
            "spearman": round(float(spearmanr(xs, scratch).statistic), 3),
            "kendall": round(float(kendalltau(xs, scratch).statistic), 3),
        }

    return {
        "what": "rank correlation between inherited-weight and trained-from-scratch validation accuracy",
        "setup": {
            "space": "studies/quickstart.toml [space], HardCoReNAS macro: stem 16, width 1.0, 3 stages",
            "supernet": {"epochs": args.supernet_epochs, "sampling": "sandwich", **{k: info[k] for k in ("paths",)}},
            "subnets": len(rows),
            "selection": "200 uniform random sub-networks sorted by LUT latency, evenly spaced picks",
            "scratch": f"{args.rank_scratch_epochs} epochs from scratch, mean of 2 seeds",
            "finetune_epochs": args.finetune_epochs,
            "seed": seed,
        },
        "supernet_train_s": round(info["train_s"], 1),
        "subnet_eval_s": round(time.perf_counter() - t0, 1),
        "inherited_vs_scratch": corr([r["inherited_val_accuracy"] for r in rows]),
        "inherited_finetuned_vs_scratch": corr([r["inherited_finetuned_val_accuracy"] for r in rows]),
        "proxy_vs_scratch": corr([-r["proxy_loss"] for r in rows]),
        "latency_vs_scratch": corr([r["lut_latency_ms"] for r in rows]),
        "search_quality": quality,
        "subnets": rows,
    }


def hardcore_search_quality(latency: Any, scores: Any, n_budgets: int = 50, seed: int = 0) -> dict[str, Any]:
    """Frank-Wolfe + repair vs exhaustive enumeration of one macro under the same proxy, over budgets."""
    from jointnas.search.samplers._hardcore_fw import search_budget

    # Every sub-network's latency and proxy loss, by broadcasting the per-stage (choice, depth) tables.
    lat_total = np.zeros(())
    loss_total = np.zeros(())
    for s, m in enumerate(latency.stage_ms):
        lat_total = np.add.outer(lat_total, m.ravel())
        loss_total = np.add.outer(loss_total, scores.stage_terms[s].ravel())
    lat_total = lat_total.ravel() + latency.fixed_ms
    loss_total = loss_total.ravel()
    budgets = np.linspace(latency.min_ms, latency.max_ms, n_budgets)
    gaps, feasible, times = [], 0, []
    for i, t in enumerate(budgets):
        t0 = time.perf_counter()
        r = search_budget(latency, scores, float(t), rng=np.random.default_rng([seed, i]))
        times.append(time.perf_counter() - t0)
        feasible += int(r.latency_ms <= t)
        best = loss_total[lat_total <= t].min()
        gaps.append(float(r.proxy_loss - scores.macro_offset(latency.macro) - best))
    gaps_arr = np.array(gaps)
    return {
        "what": "FW + repair vs exhaustive search of the same proxy under the same LUT budget",
        "subnetworks_enumerated": int(lat_total.size),
        "budgets": n_budgets,
        "within_budget": feasible,
        "optimal_fraction": round(float(np.mean(gaps_arr <= 1e-9)), 3),
        "mean_gap": round(float(gaps_arr.mean()), 5),
        "max_gap": round(float(gaps_arr.max()), 5),
        "proxy_loss_range": round(float(loss_total.max() - loss_total.min()), 5),
        "search_s_median": round(float(np.median(times)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, 4 trials, 1 epoch: a smoke test")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-trials", type=int, default=30, help="per study (the quickstart study's budget)")
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=DEFAULT_TASKS,
        choices=list(TASKS),
        help="settings (mnist1d_costly: 20-epoch trials)",
    )
    parser.add_argument(
        "--reuse",
        default=None,
        help="a previous samplers.json with the same setup: keep its runs of samplers not run now",
    )
    parser.add_argument("--out", default=None, help="default: benchmarks/results/samplers.json (--quick: a temp file)")
    parser.add_argument("--rank-correlation", action="store_true", help="also run the HardCoReNAS rank study")
    parser.add_argument("--rank-only", action="store_true", help="only the HardCoReNAS rank study")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="FILE",
        help="run nothing: the runs of FILEs (other invocations' --out, e.g. run beside this one or for other "
        "seeds) replace those settings' runs in --out; the document is rewritten from the result",
    )
    parser.add_argument("--doc", default=str(DOC), help="the document whose measured part is written from the JSON")
    parser.add_argument("--rank-subnets", type=int, default=12)
    parser.add_argument("--rank-scratch-epochs", type=int, default=10)
    parser.add_argument("--supernet-epochs", type=int, default=20)
    parser.add_argument(
        "--lut-dir",
        default=None,
        help="folder of the per-setting latency tables (lut-<setting>.json, measured on demand): invocations run "
        "beside each other price a layer alike when they share it (default: a fresh temp folder)",
    )
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    if args.quick:
        args.seeds, args.n_trials, args.train_epochs, args.finetune_epochs = [0], 4, 1, 1
        args.rank_subnets, args.rank_scratch_epochs, args.supernet_epochs = 4, 1, 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.out is None:  # a smoke test never overwrites the measured results
        quick_out = Path(tempfile.gettempdir()) / "jointnas-samplers-quick.json"
        args.out = str(quick_out if args.quick else ROOT / "benchmarks/results/samplers.json")
    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.exists() and not args.quick else {}
    if args.rank_only:
        result = dict(previous, hardcore_rank_correlation=hardcore_rank_correlation(args))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1))
        print(json.dumps({k: v for k, v in result["hardcore_rank_correlation"].items() if k != "subnets"}, indent=1))
        print(f"written to {args.out}")
        return
    if args.merge:
        merge(args, previous)
        return
    tasks = [t for t in args.tasks if TASKS[t].get("task.dataset", t) in dataset_names()]
    skipped = sorted(set(args.tasks) - set(tasks))
    work = Path(tempfile.mkdtemp(prefix="jointnas-samplers-"))
    runs: list[dict[str, Any]] = []
    if args.reuse:
        old = json.loads(Path(args.reuse).read_text())
        keys = ("n_trials", "train_epochs", "finetune_epochs")
        if any(old["setup"][k] != getattr(args, k) for k in keys):
            raise SystemExit(f"--reuse {args.reuse}: its setup differs in one of {keys}")
        kept = [
            r
            for r in old["runs"]
            if (r["sampler"] not in args.samplers or r["task"] not in args.tasks) and r["seed"] in args.seeds
        ]
        for r in kept:
            r["reused_from_earlier_invocation"] = True
        runs.extend(kept)
        args.reused = sorted({f"{r['task']}:{r['sampler']}" for r in kept})
    # Runs of the settings not run now stay in --out (e.g. `--tasks mnist1d_costly` keeps digits, mnist1d).
    have = {(r["task"], r["sampler"], r["seed"]) for r in runs}
    for r in previous.get("runs", []):
        if r["task"] not in tasks and (r["task"], r["sampler"], r["seed"]) not in have:
            runs.append(dict(r, reused_from_earlier_invocation=True))
    for task in tasks:
        lut = Path(args.lut_dir or work) / f"lut-{task}.json"
        for seed in args.seeds:
            for sampler in args.samplers:
                if (task, sampler) in UNSUPPORTED:
                    continue
                run = run_one(task, sampler, seed, args, work, lut)
                print(
                    f"{task} {sampler} seed={seed}: {run['wall_time_s']:.1f} s, {len(run['trials'])} trials", flush=True
                )
                runs.append(run)
                write(args, runs, skipped, previous)  # partial results survive an interrupted benchmark
    if args.rank_correlation:
        previous["hardcore_rank_correlation"] = hardcore_rank_correlation(args)
    result = write(args, runs, skipped, previous)
    if not args.quick:
        write_doc(result, Path(args.doc))
    print(json.dumps(result["summary"], indent=1))
    print(f"written to {args.out}")
    shutil.rmtree(work, ignore_errors=True)


def merge(args: argparse.Namespace, previous: dict[str, Any]) -> None:
    """``--merge FILE ...``: the FILEs' runs replace their settings' runs in ``--out``; then the document."""
    others = [(f, json.loads(Path(f).read_text())) for f in args.merge]
    for f, other in others:
        if any(other["setup"][k] != getattr(args, k) for k in ("n_trials", "train_epochs", "finetune_epochs")):
            raise SystemExit(f"--merge {f}: its setup differs from this invocation's (--n-trials, epochs)")
    threads = {d["setup"]["torch_threads"] for d in [previous, *(o for _, o in others)] if d}
    if len(threads) > 1:
        raise SystemExit(f"--merge: the files ran with different torch thread counts {sorted(threads)}")
    torch.set_num_threads(threads.pop())  # the setup records the runs' threads, not this invocation's
    theirs = [r for _, other in others for r in other["runs"]]
    keys = [(r["task"], r["sampler"], r["seed"]) for r in theirs]
    if len(set(keys)) < len(keys):
        raise SystemExit(f"--merge: runs of one (setting, sampler, seed) in two files: {sorted(keys)}")
    runs = [r for r in previous.get("runs", []) if r["task"] not in {r["task"] for r in theirs}]
    runs += [dict(r, reused_from_earlier_invocation=True) for r in theirs]
    args.reused = sorted({f"{r['task']}:{r['sampler']}" for r in runs if r.get("reused_from_earlier_invocation")})
    result = write(args, runs, [], previous)
    write_doc(result, Path(args.doc))
    print(json.dumps(result["acceptance"], indent=1))
    print(f"merged {', '.join(args.merge)} into {args.out}; {args.doc} rewritten")


def write(
    args: argparse.Namespace, runs: list[dict[str, Any]], skipped: list[str], previous: dict[str, Any]
) -> dict[str, Any]:
    """Compute HV curves with one reference point per task over ``runs`` and write the JSON.

    Top-level keys of ``previous`` that this function does not write are kept.
    """
    tasks = sorted({r["task"] for r in runs})
    refs = {}
    for task in tasks:
        feas = [ev for r in runs if r["task"] == task for ev in r["trials"] if ev["feasible"]]
        ref = np.array(
            [
                1.0,
                1.1 * max((ev["latency_ms"] for ev in feas), default=1.0),
                1.1 * max((ev["flash_bytes"] for ev in feas), default=1.0),
            ]
        )
        refs[task] = ref
        curves([r for r in runs if r["task"] == task], ref)
    done = sorted({(r["task"], r["seed"]) for r in runs})
    result = {
        "what": "hypervolume of the feasible (1-accuracy, latency_ms, flash_bytes) front vs wall time",
        "config": "studies/quickstart.toml with the overrides below",
        "setup": {
            "seeds": sorted({r["seed"] for r in runs}),
            "n_trials": args.n_trials,
            "train_epochs": args.train_epochs,
            "finetune_epochs": args.finetune_epochs,
            "samplers": {s: SAMPLERS[s] for s in sorted({r["sampler"] for r in runs}, key=list(SAMPLERS).index)},
            "reused_runs_of": getattr(args, "reused", []),
            "quick": args.quick,
            "torch_threads": torch.get_num_threads(),
            "reference_point": {t: [round(float(v), 6) for v in refs[t]] for t in tasks},
            "hv_normalisation": "each axis divided by the task's reference point (HV <= 1)",
            "tasks_run": tasks,
            "task_overrides": {t: TASKS[t] for t in tasks},
            "task_sampler_options": {f"{t}:{s}": o for (t, s), o in TASK_SAMPLER_OPTIONS.items() if t in tasks},
            "tasks_skipped": {t: "task not registered in this checkout" for t in skipped},
            "not_run": {f"{t}:{s}": why for (t, s), why in UNSUPPORTED.items() if t in tasks},
            "runs_done": [
                {"task": t, "seed": s, "samplers": [r["sampler"] for r in runs if (r["task"], r["seed"]) == (t, s)]}
                for t, s in done
            ],
        },
        "summary": summarize(runs, tasks, sorted({r["sampler"] for r in runs}, key=list(SAMPLERS).index)),
        "runs": runs,
        "notes": "wall times include each sampler's own work (DNAS: supernet training in the first trial); "
        "one latency table per task shared by all runs (the first run measures the layers it meets); "
        "load_avg_1m of a run tells whether other jobs shared the machine",
        "versions": versions(),
    }
    result["notes"] += (
        "; runs marked reused_from_earlier_invocation come from a separate invocation (other machine load); "
        "hardcore: supernet training (sandwich path sampling) inside "
        "the first trial, inherited scoring (from supernet weights: the compute of finetune_epochs epochs "
        "of the slowest sub-network, at most train_epochs, instead of train_epochs from scratch), "
        "flash_budget = range: a Flash budget beside each latency budget"
    )
    result["acceptance"] = acceptance(result["summary"], runs)
    result = {**{k: v for k, v in previous.items() if k not in result}, **result}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
