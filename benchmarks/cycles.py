"""Cycle-model benchmark: the Uno's hand-set coefficients vs coefficients fitted in simavr.

`jointnas lut build --device arduino-uno --config studies/tinychat_arduino.toml` (40 random models of
the space simulated, coefficients fitted), then `jointnas lut validate` on 100 other random models with
the hand-set profile and with the fitted one: Spearman ρ, Kendall τ, mean |error| and the shares within
±5% / ±10% / ±20% of simavr's cycles (goal: ≥ 95% within ±10%). Writes benchmarks/results/cycles.json.
Usage: python benchmarks/cycles.py [--n-calibration N] [--n-validate N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import optuna

from jointnas.search.config import load_config
from jointnas.search.study import versions
from jointnas.search.tools.cycles import calibrate_cycles, validate_cycles

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="studies/tinychat_arduino.toml")
    parser.add_argument("--n-calibration", type=int, default=40)
    parser.add_argument("--n-validate", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/cycles.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.chdir(ROOT)  # the study's data path is relative to the repository root
    config = load_config(args.config)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        calibrated = Path(tmp) / "arduino-uno-calibrated.json"
        t0 = time.perf_counter()
        fit = calibrate_cycles(config, "arduino-uno", calibrated, n_models=args.n_calibration)
        fit_s = time.perf_counter() - t0
        profile = json.loads(calibrated.read_text())
        t0 = time.perf_counter()
        hand = validate_cycles(config, "arduino-uno", n_models=args.n_validate)
        fitted = validate_cycles(config, calibrated, n_models=args.n_validate)
        validate_s = time.perf_counter() - t0
    keys = [k for k in profile if k.startswith("cycles_per")]
    result = {
        "benchmark": "cycles",
        "command": f"jointnas lut build --device arduino-uno --config {args.config} --n-calibration "
        f"{args.n_calibration}; jointnas lut validate --n-archs {args.n_validate} (hand-set and fitted)",
        "calibration": fit,
        "calibration_s": round(fit_s, 1),
        "fitted_coefficients": {k: profile[k] for k in keys},
        "validate_hand_set": hand,
        "validate_fitted": fitted,
        "validate_s": round(validate_s, 1),
        "goal_within_10pct": 0.95,
        "goal_met": fitted["metrics"]["within_10pct"] >= 0.95,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name in ("validate_hand_set", "validate_fitted"):
        m = result[name]["metrics"]
        print(
            f"{name}: rho {m['spearman']:.3f} tau {m['kendall']:.3f} |err| {m['mean_abs_rel_error']:.1%} "
            f"within 5/10/20%: {m['within_5pct']:.0%} {m['within_10pct']:.0%} {m['within_20pct']:.0%}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
