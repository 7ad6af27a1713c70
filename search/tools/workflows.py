"""Three workflows as config transforms, run as sibling studies, and compared on equal trial budgets.

- ``post`` — NAS, then compress. Stage 1 (study ``NAME-post-nas``) searches the architecture only:
  every compression knob is fixed off and the pipeline only trains; the deployment constraints are
  not applied (a compression-unaware search does not know the compressed size). Stage 2 (study
  ``NAME-post``) compresses each architecture of stage 1's Pareto front with one fixed plan
  (`POST_PLAN`, snapped to the space) and *no* fine-tuning after compression (train → prune →
  low-rank → quantize with calibration): the "take the best FP32 model and compress it" practice.
- ``aware`` — compression-aware search without post-compression training (study ``NAME-aware``):
  the joint space, pipeline steps with every ``finetune`` removed.
- ``aware-finetune`` — compression-aware search with it (study ``NAME-aware-finetune``): the joint
  space and the config's pipeline as written (fine-tuning / QAT after each compression step).

Each workflow gets ``budget.n_trials`` search trials; ``post`` additionally evaluates its front once
(counted in its wall time, not in its trials). Every study resumes like ``jointnas run``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from jointnas.spaces import UserInputError
from jointnas.spaces.params import float_grid
from jointnas.spaces.precision import precision_order, storage_bits

from ..config import StudyConfig, parse_config
from ..study import create_or_resume, front, run_study

WORKFLOWS = ("post", "aware", "aware-finetune")
POST_PLAN: dict[str, Any] = {"prune_ratio": 0.25, "rank_ratio": 1.0, "weight_bits": 8, "act_bits": 8, "head_bits": 8}
"""The fixed plan of ``post``: moderate structured pruning and 8-bit weights and activations."""


def _replace(config: StudyConfig, **sections: dict[str, Any]) -> StudyConfig:
    data = json.loads(config.model_dump_json())
    for dotted, value in sections.items():
        node = data
        *parents, key = dotted.split(".")
        for p in parents:
            node = node[p]
        node[key] = value
    return parse_config(data, "workflow")


def _snap(value: float, lo: float, hi: float, step: float) -> float:
    """The value of the space's stepped grid (`spaces.params.float_grid`) nearest to ``value``."""
    return min(float_grid((lo, hi), step), key=lambda v: abs(v - value))


def post_plan(config: StudyConfig) -> dict[str, Any]:
    """`POST_PLAN` snapped to the study's space: ratios to its grid, bits to the nearest allowed choice."""
    knobs = config.space.compression

    def nearest(choices: list[Any], want: int) -> Any:
        return min(choices, key=lambda b: (abs(storage_bits(b) - want), precision_order(b)))

    return {
        "prune_ratio": _snap(POST_PLAN["prune_ratio"], *knobs.prune_ratio, knobs.prune_step),
        "rank_ratio": _snap(POST_PLAN["rank_ratio"], *knobs.rank_ratio, knobs.rank_step),
        "weight_bits": nearest(list(knobs.weight_bits), POST_PLAN["weight_bits"]),
        "act_bits": nearest(list(knobs.act_bits), POST_PLAN["act_bits"]),
        "head_bits": nearest(list(knobs.head_bits), POST_PLAN["head_bits"]),
    }


def _fixed_knobs(plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "prune_ratio": [plan["prune_ratio"]] * 2,
        "rank_ratio": [plan["rank_ratio"]] * 2,
        "weight_bits": [plan["weight_bits"]],
        "act_bits": [plan["act_bits"]],
        "head_bits": [plan["head_bits"]],
    }


NO_COMPRESSION = {"prune_ratio": 0.0, "rank_ratio": 1.0, "weight_bits": 32, "act_bits": 32, "head_bits": 32}


def without_finetune(steps: list[str]) -> list[str]:
    return [s for s in steps if s != "finetune"]


def stage_configs(config: StudyConfig, workflow: str) -> list[StudyConfig]:
    """The study config of each stage of ``workflow`` (sibling names, same storage, seed and budget)."""
    name = config.study.name
    knobs = config.space.compression.model_dump()
    steps = list(config.pipeline.steps)
    if workflow == "post":
        nas = _replace(
            config,
            **{
                "study.name": f"{name}-post-nas",
                "space.compression": {**knobs, **_fixed_knobs(NO_COMPRESSION)},
                "pipeline.steps": [],
                "constraints": {},
            },
        )
        compress = _replace(
            config,
            **{
                "study.name": f"{name}-post",
                "space.compression": {**knobs, **_fixed_knobs(post_plan(config))},
                "pipeline.steps": without_finetune(steps),
                "sampler": {"name": "random", "options": {}},
            },
        )
        return [nas, compress]
    if workflow == "aware":
        return [_replace(config, **{"study.name": f"{name}-aware", "pipeline.steps": without_finetune(steps)})]
    if workflow == "aware-finetune":
        if "finetune" not in steps:
            raise UserInputError(
                "workflow 'aware-finetune' needs 'finetune' in [pipeline] steps; add it after each step"
            )
        return [_replace(config, **{"study.name": f"{name}-aware-finetune"})]
    raise UserInputError(f"unknown workflow {workflow!r}; choose from {', '.join(WORKFLOWS)}")


def parse_workflows(text: str) -> list[str]:
    names = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in names if w not in WORKFLOWS]
    if bad or not names:
        raise UserInputError(f"--workflows {text!r}: unknown {bad or 'empty list'}; choose from {','.join(WORKFLOWS)}")
    return list(dict.fromkeys(names))


@dataclass
class WorkflowRun:
    """The studies of one workflow: its search study and the study holding its deployable models."""

    name: str
    search: optuna.Study
    final: optuna.Study
    stages: list[StudyConfig] = field(default_factory=list)


def run_workflow(
    config: StudyConfig,
    workflow: str,
    storage_url: str,
    *,
    config_path: Path | None,
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None = None,
) -> WorkflowRun:
    """Run (or resume) every stage of ``workflow``."""
    stages = stage_configs(config, workflow)
    first = stages[0]
    search = run_study(first, create_or_resume(first, storage_url), config_path=config_path, callbacks=callbacks)
    if workflow != "post":
        return WorkflowRun(workflow, search, search, stages)
    second = stages[1]
    archs = front(search)
    second = _replace(second, **{"budget.n_trials": max(1, len(archs))})
    final = create_or_resume(second, storage_url)
    done = {json.dumps(t.params, sort_keys=True) for t in final.get_trials(deepcopy=False)}
    for t in archs:
        if json.dumps(t.params, sort_keys=True) not in done:
            final.enqueue_trial(t.params, skip_if_exists=True)
    run_study(second, final, config_path=config_path, callbacks=callbacks)
    return WorkflowRun(workflow, search, final, [first, second])


# ----------------------------------------------------------------------------------------------- metrics


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)


def _feasible(t: FrozenTrial) -> bool:
    return bool(t.user_attrs.get("feasible", True))


def trial_seconds(studies: list[optuna.Study]) -> float:
    """Sum of the trials' durations (s): the compute a workflow spent, robust to resuming."""
    total = timedelta()
    for study in studies:
        for t in study.get_trials(deepcopy=False):
            if t.datetime_start and t.datetime_complete:
                total += t.datetime_complete - t.datetime_start
    return total.total_seconds()


def best_accuracy_curve(study: optuna.Study) -> list[float | None]:
    """Best validation accuracy among feasible COMPLETE trials after each trial (None before any)."""
    best: float | None = None
    out: list[float | None] = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and _feasible(t):
            acc = t.values[0]
            best = acc if best is None else max(best, acc)
        out.append(best)
    return out


def points(study: optuna.Study, feasible_only: bool = True) -> np.ndarray:
    """Objective values of COMPLETE (feasible) trials, one row per trial."""
    rows = [t.values for t in _complete(study) if not feasible_only or _feasible(t)]
    return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def reference_point(all_points: list[np.ndarray], directions: list[str]) -> np.ndarray:
    """A fixed reference point for every workflow: accuracy 0, each cost 1.1 × the worst seen anywhere."""
    stacked = np.vstack([p for p in all_points if len(p)]) if any(len(p) for p in all_points) else None
    ref = []
    for i, d in enumerate(directions):
        if d == "maximize":
            ref.append(0.0)
        else:
            worst = float(stacked[:, i].max()) if stacked is not None else 1.0
            ref.append(1.1 * worst if worst > 0 else 1.0)
    return np.asarray(ref)


def hypervolume(pts: np.ndarray, ref: np.ndarray, directions: list[str]) -> float:
    """Hypervolume of ``pts`` w.r.t. ``ref``, normalized so the box from ideal (acc 1, cost 0) to ref is 1."""
    if len(pts) == 0:
        return 0.0
    loss = np.empty_like(pts, dtype=float)
    for i, d in enumerate(directions):
        if d == "maximize":  # accuracy in [0, 1]: loss 1 - acc, reference 1 - ref
            loss[:, i] = (1.0 - pts[:, i]) / (1.0 - ref[i])
        else:
            loss[:, i] = pts[:, i] / ref[i]
    inside = np.all(loss < 1.0, axis=1)
    if not inside.any():
        return 0.0
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(loss[inside], np.ones(loss.shape[1])))


def summarize(runs: list[WorkflowRun]) -> dict[str, Any]:
    """The comparison table and curves of ``runs`` (JSON-able)."""
    directions = [d.name.lower() for d in runs[0].final.directions]
    metrics = runs[0].final.metric_names or [f"value{i}" for i in range(len(directions))]
    pts = {r.name: points(r.final) for r in runs}
    ref = reference_point(list(pts.values()), directions)
    table = []
    for r in runs:
        finals = _complete(r.final)
        feasible = [t for t in finals if _feasible(t)]
        best = max(feasible, key=lambda t: t.values[0]) if feasible else None
        studies = [r.search] if r.final is r.search else [r.search, r.final]
        table.append(
            {
                "workflow": r.name,
                "studies": [s.study_name for s in studies],
                "search_trials": len(_complete(r.search)),
                "evaluated_models": len(finals),
                "feasible_models": len(feasible),
                "hypervolume": hypervolume(pts[r.name], ref, directions),
                "best_feasible_val_accuracy": best.values[0] if best else None,
                "best_feasible_test_accuracy": best.user_attrs.get("test_accuracy") if best else None,
                "best_feasible_trial": best.number if best else None,
                "best_feasible_values": dict(zip(metrics, best.values, strict=True)) if best else None,
                "wall_time_s": trial_seconds(studies),
            }
        )
    curves = {r.name: best_accuracy_curve(r.search) for r in runs}

    def point(t: FrozenTrial) -> dict[str, Any]:
        return {
            "trial": t.number,
            **dict(zip(metrics, t.values, strict=True)),
            "test_accuracy": t.user_attrs.get("test_accuracy"),
        }

    fronts = {r.name: [point(t) for t in front(r.final) if _feasible(t)] for r in runs}
    models = {r.name: [point(t) for t in _complete(r.final) if _feasible(t)] for r in runs}
    ranked = [row for row in table if row["hypervolume"] is not None]
    winner_hv = max(ranked, key=lambda row: row["hypervolume"])["workflow"] if ranked else None
    with_acc = [row for row in table if row["best_feasible_val_accuracy"] is not None]
    winner_acc = max(with_acc, key=lambda row: row["best_feasible_val_accuracy"])["workflow"] if with_acc else None
    return {
        "metrics": metrics,
        "directions": directions,
        "reference_point": dict(zip(metrics, ref.tolist(), strict=True)),
        "table": table,
        "curves": curves,
        "fronts": fronts,
        "models": models,
        "winner": {"hypervolume": winner_hv, "best_feasible_val_accuracy": winner_acc},
    }


__all__ = [
    "NO_COMPRESSION",
    "POST_PLAN",
    "WORKFLOWS",
    "WorkflowRun",
    "best_accuracy_curve",
    "hypervolume",
    "parse_workflows",
    "post_plan",
    "reference_point",
    "run_workflow",
    "stage_configs",
    "summarize",
]
