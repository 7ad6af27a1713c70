"""Export benchmark: export every Pareto-optimal trial of a quickstart study and check the acceptance figures.

For each front trial: INT8 ONNX test accuracy vs the accuracy the search reported (goal: within 1 pt),
measured end-to-end ONNX Runtime latency vs the latency-table prediction (goal: within 15 %), and file
sizes vs the Flash estimate. Writes benchmarks/results/export.json.

The ``largest_architecture`` row times one quickstart trial of the space's largest architecture
(3 stages, depth 2, width 1.0, expansion 6, kernel 5, stem 16; 8-bit weights and activations) trained 60
epochs with fine-tunes of 5, then its export from the stored model (no training) and, with
``--with-retrain``, with ``--retrain`` for comparison; ``model.onnx`` is scored on the raw digits pixels.

Usage:
    python benchmarks/export.py [--n-trials N]                  # run studies/quickstart.toml first
    python benchmarks/export.py --storage URL --study-name NAME  # export an existing study's front
    python benchmarks/export.py --largest-only --out benchmarks/results/export_largest.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from jointnas.search.config import apply_overrides, load_config
from jointnas.search.storage import open_storage
from jointnas.search.study import create_or_resume, front, load_study, lut_path, run_study, versions
from jointnas.search.tools.export import export_trial
from jointnas.search.tools.lut import build_table
from jointnas.search.worker import record_run

ROOT = Path(__file__).resolve().parents[1]
LARGEST = {
    "head_bits": 8,
    "stem_channels": 16,
    "n_stages": 3,
    **{
        f"s{i}_{k}": v
        for i in range(3)
        for k, v in {
            "width": 1.0,
            "depth": 2,
            "kernel": 5,
            "expansion": 6,
            "prune": 0.0,
            "rank": 1.0,
            "wbits": 8,
            "abits": 8,
        }.items()
    },
}


def largest_row(work: Path, retrain: bool) -> dict:
    """Trial time of the largest architecture (60 + 5-epoch fine-tunes) vs its export without and with --retrain."""
    import numpy as np

    from jointnas.compression import onnx_logits
    from jointnas.objectives import load_task

    config_path = work / "largest.toml"
    shutil.copy(ROOT / "studies/quickstart.toml", config_path)
    overrides = {"budget.n_trials": 1, "pipeline.train_epochs": 60, "pipeline.finetune_epochs": 5}
    config = apply_overrides(load_config(config_path), **overrides, **{"study.name": "largest"})
    study = create_or_resume(config, f"sqlite:///{work / 'largest.db'}")
    record_run(study, 1, work / "largest-artifacts")
    study.enqueue_trial(LARGEST)
    study = run_study(config, study, config_path=config_path, artifact_dir=work / "largest-artifacts")
    trial = study.trials[0]
    trial_s = (trial.datetime_complete - trial.datetime_start).total_seconds()
    print(f"trial {trial.state.name} in {trial_s:.1f} s: {trial.user_attrs.get('timings_s')}", flush=True)
    t0 = time.perf_counter()
    rep = export_trial(study, 0, work / "largest")
    export_s = time.perf_counter() - t0
    task = load_task(config.task)
    raw = np.round(task.normalization.invert(task.x_test.numpy(), task.input_shape))  # digits pixels 0..16
    raw_acc = float((onnx_logits(work / "largest" / "model.onnx", raw).argmax(1) == task.y_test.numpy()).mean())
    print(f"export from the stored model in {export_s:.1f} s; model.onnx on raw pixels {raw_acc:.4f}", flush=True)
    retrain_s = None
    if retrain:
        t0 = time.perf_counter()
        export_trial(study, 0, work / "largest-retrain", retrain=True)
        retrain_s = round(time.perf_counter() - t0, 1)
    return {
        "params": LARGEST,
        "train_epochs": 60,
        "finetune_epochs": 5,
        "trial_s": round(trial_s, 1),
        "trial_train_s": round(
            sum(
                v for k, v in trial.user_attrs["timings_s"].items() if k != "total_s" and k not in ("eval_s", "cost_s")
            ),
            1,
        ),
        "export_s": round(export_s, 1),
        "export_over_trial": round(export_s / trial_s, 3),
        "export_retrain_s": retrain_s,
        "test_accuracy_reported": rep["accuracy"]["trial_reported_test"],
        "test_accuracy_stored_torch": rep["accuracy"]["torch"],
        "test_accuracy_model_onnx_raw_pixels": raw_acc,
        "test_accuracy_model_int8_onnx": rep["accuracy"]["onnx_int8"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--storage")
    parser.add_argument("--study-name", default="quickstart")
    parser.add_argument("--study-command", default=None, help="how the given study was made (recorded)")
    parser.add_argument("--lut", help="latency table of the given study")
    parser.add_argument("--n-calibration", type=int, default=30, help="models timed to calibrate the table")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/export.json"))
    parser.add_argument("--keep", action="store_true", help="keep the study, table and exported files")
    parser.add_argument("--largest-only", action="store_true", help="only the largest-architecture timing row")
    parser.add_argument("--with-retrain", action="store_true", help="largest row: also time export --retrain")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="jointnas-export-"))
    if args.largest_only:
        row = largest_row(work, args.with_retrain)
        result = {"largest_architecture": row, "versions": versions()}
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(json.dumps(row, indent=2))
        shutil.rmtree(work, ignore_errors=True)
        return
    lut, lut_summary = (Path(args.lut) if args.lut else None), None
    if args.storage:
        study = load_study(open_storage(args.storage), args.study_name)
        made_by = args.study_command or "given study"
    else:
        config_path = work / "quickstart.toml"
        shutil.copy(ROOT / "studies/quickstart.toml", config_path)
        config = apply_overrides(load_config(config_path), **{"budget.n_trials": args.n_trials})
        # The calibrated block table the study (and then export) predicts with, built as
        # `jointnas lut build --device ort-cpu --config studies/quickstart.toml` does.
        lut = lut_path(config, config_path)
        t0 = time.perf_counter()
        lut_summary = build_table(config, config.device.name, lut, n_calibration=args.n_calibration)
        lut_summary["wall_s"] = round(time.perf_counter() - t0, 1)
        study = create_or_resume(config, f"sqlite:///{work / 'q.db'}")
        record_run(study, config.budget.n_trials, work / "artifacts")  # export reads the stored models there
        study = run_study(config, study, config_path=config_path, artifact_dir=work / "artifacts")
        made_by = (
            "jointnas lut build --device ort-cpu --config studies/quickstart.toml "
            f"--n-calibration {args.n_calibration}; "
            f"jointnas run studies/quickstart.toml --n-trials {args.n_trials}"
        )
    rows = []
    for trial in front(study):
        t0 = time.perf_counter()
        rep = export_trial(study, trial.number, work / f"t{trial.number}", lut=lut)
        acc, lat, size = rep["accuracy"], rep["latency_ms"], rep["sizes"]
        rows.append(
            {
                "trial": trial.number,
                "test_accuracy_reported": acc["trial_reported_test"],
                "test_accuracy_torch": acc["torch"],
                "test_accuracy_onnx_fp32": acc["onnx_fp32"],
                "test_accuracy_onnx_int8": acc["onnx_int8"],
                "int8_minus_reported_pt": 100 * (acc["onnx_int8"] - acc["trial_reported_test"]),
                "latency_lut_ms": lat["lut_predicted"],
                "latency_lut_block_sum_ms": lat["lut_block_sum"],
                "lut_calibrated": lat["lut_calibrated"],
                "latency_measured_fp32_ms": lat["measured_onnx_fp32"],
                "latency_measured_int8_ms": lat["measured_onnx_int8"],
                "latency_measured_baseline_ms": lat["measured_baseline_onnx_fp32"],
                "latency_lut_baseline_ms": lat["baseline_lut_predicted"],
                "fp32_vs_lut": lat["fp32_vs_lut"],
                "fp32_vs_lut_block_sum": lat["fp32_vs_lut_block_sum"],
                "baseline_vs_lut": lat["baseline_vs_lut"],
                "c_array_bytes": size["c_array"].get("array_bytes"),
                "flash_estimate_bytes": size["flash_estimate_bytes"],
                "model_onnx_bytes": size["model_onnx_bytes"],
                "model_int8_onnx_bytes": size["model_int8_onnx_bytes"],
                "baseline_onnx_bytes": size["baseline_onnx_bytes"],
                "sram_estimate_bytes": size["sram_estimate_bytes"],
                "c_array": size["c_array"],
                # the C library built on this machine, on the raw test samples (search.tools.mcu.measure_export)
                "c_host_accuracy": rep["c_build"]["host"].get("accuracy"),
                "c_host_agreement_onnx": rep["c_build"]["host"].get("agreement", {}).get("model.onnx"),
                "c_host_agreement_torch": rep["c_build"]["host"].get("agreement", {}).get("torch"),
                "export_s": round(time.perf_counter() - t0, 1),
                "trial_s": round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "study": made_by,
        "front_trials": len(rows),
        "int8_within_1pt": sum(abs(r["int8_minus_reported_pt"]) <= 1.0 for r in rows),
        "fp32_latency_within_15pct_of_lut": sum(abs(r["fp32_vs_lut"]) <= 0.15 for r in rows),
        "baseline_latency_within_15pct_of_lut": sum(abs(r["baseline_vs_lut"]) <= 0.15 for r in rows),
        "c_array_equals_flash_estimate": sum(r["c_array_bytes"] == r["flash_estimate_bytes"] for r in rows),
        "c_host_agrees_98pct_with_onnx": sum((r["c_host_agreement_onnx"] or 0) >= 0.98 for r in rows),
        "c_host_within_3pt_of_trial": sum(
            abs((r["c_host_accuracy"] or 0) - r["test_accuracy_reported"]) <= 0.03 for r in rows
        ),
        "lut": lut_summary,
        "median_fp32_vs_lut": statistics.median(r["fp32_vs_lut"] for r in rows) if rows else None,
        "rows": rows,
        "notes": "latency: ONNX Runtime, batch 1, 1 thread, fastest of interleaved passes spread over >= 3 s "
        "(devices.MIN_SPAN_S); model.onnx is the float deployment form (activation clips kept, fake-quant "
        "rounding dropped), model.int8.onnx its ONNX Runtime QDQ quantization",
        "versions": versions(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
