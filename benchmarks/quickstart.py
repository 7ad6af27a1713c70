"""Quickstart benchmark: run studies/quickstart.toml from scratch and record time, phases and the front.

Writes benchmarks/results/quickstart.json. Usage: python benchmarks/quickstart.py [--n-trials N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, front, run_study, versions

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-trials", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/quickstart.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="jointnas-bench-"))
    config_path = work / "quickstart.toml"
    shutil.copy(ROOT / "studies/quickstart.toml", config_path)  # fresh storage and latency table
    config = apply_overrides(load_config(config_path), **{"budget.n_trials": args.n_trials})
    study = create_or_resume(config, f"sqlite:///{work / 'quickstart.db'}")
    started = time.perf_counter()
    run_study(config, study, config_path=config_path)
    wall_s = time.perf_counter() - started

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    phases: dict[str, float] = {}
    for t in complete:
        for key, value in t.user_attrs["timings_s"].items():
            if key != "total_s":
                phases[key] = phases.get(key, 0.0) + value
    names = study.metric_names
    pareto = [
        {
            "number": t.number,
            "values": dict(zip(names, t.values, strict=True)),
            "test_accuracy": t.user_attrs["test_accuracy"],
            "fp32_flash_bytes": t.user_attrs["fp32_flash_bytes"],
            "flash_ratio_vs_fp32": t.user_attrs["flash_ratio_vs_fp32"],
            "params": t.params,
        }
        for t in front(study)
    ]
    qualifying = [p for p in pareto if p["test_accuracy"] >= 0.95 and p["flash_ratio_vs_fp32"] <= 0.25]
    result = {
        "config": "studies/quickstart.toml",
        "wall_time_s": round(wall_s, 1),
        "trials_complete": len(complete),
        "trials_total": len(study.trials),
        "phase_time_s": {k: round(v, 2) for k, v in sorted(phases.items())},
        "phase_share": {k: round(v / sum(phases.values()), 3) for k, v in sorted(phases.items())},
        "front": pareto,
        "front_best_test_accuracy_at_quarter_flash": max((p["test_accuracy"] for p in qualifying), default=None),
        "qualifying_models": len(qualifying),
        "versions": versions(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "front"}, indent=2))
    print(f"front: {len(pareto)} trials; written to {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
