"""Latency-table benchmark: build the quickstart space's table, validate it, report MCU fits.

1. ``lut build`` for ``ort-cpu`` over studies/quickstart.toml's space (goal: ≤ 5 minutes).
2. ``lut validate`` on 100 random architectures (goal: calibrated Spearman ρ ≥ 0.95 and ≥ 90% within
   ±10%), timings interleaved over several passes with medians, so load from other processes on a
   shared machine hits single passes.
3. With ``--compare``, the same for ``ort-cpu-nchwc`` (ONNX Runtime defaults, NCHWc layout on).
4. The tinychat-style MLP (256→256→192→128→40) on arduino-uno and the other microcontrollers: FP32,
   INT8, and 50%-pruned with 2-bit weights.

Writes benchmarks/results/lut.json (``--quick``: a smoke run, benchmarks/results/lut-quick.json).
Usage: python benchmarks/lut.py [--quick] [--compare]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from jointnas.compression import fold_batchnorm, prune_channels, quantize_model
from jointnas.devices import REPEATS, ROUNDS, device_fingerprint, fit_profiles, fit_report
from jointnas.search.config import load_config
from jointnas.search.study import versions
from jointnas.search.tools.lut import build_table, validate_table
from jointnas.spaces import Candidate, Stage, build_model, trace_layers

ROOT = Path(__file__).resolve().parents[1]
TINYCHAT = Candidate("mlp", (256,), 40, (Stage(256), Stage(192), Stage(128)))


def _variant(candidate: Candidate, head_bits: int | None = None, **knobs) -> Candidate:
    stages = tuple(dataclasses.replace(s, **knobs) for s in candidate.stages)
    return dataclasses.replace(candidate, stages=stages, head_bits=head_bits or candidate.head_bits)


def tinychat_report() -> dict:
    """Flash/SRAM/latency of the tinychat MLP variants on every microcontroller profile."""
    variants = {
        "fp32": TINYCHAT,
        "int8": _variant(TINYCHAT, 8, weight_bits=8, act_bits=8),
        "pruned50_w2a8": _variant(TINYCHAT, 8, prune_ratio=0.5, weight_bits=2, act_bits=8),
    }
    out = {}
    for name, c in variants.items():
        torch.manual_seed(0)
        model = build_model(c)
        prune_channels(model, c)
        quantize_model(model, c)
        layers = trace_layers(fold_batchnorm(model).eval(), c.input_shape)
        out[name] = {
            "widths": [layer.out_channels for layer in layers],
            "weight_bits": [layer.weight_bits for layer in layers],
            "devices": {p.name: fit_report(layers, p).to_dict() for p in fit_profiles()},
        }
    return out


def tinychat_entry() -> dict:
    """lut.json's ``tinychat_mlp`` entry: the variants on the Uno against their expected verdicts."""
    tiny = tinychat_report()
    uno = {k: v["devices"]["arduino-uno"] for k, v in tiny.items()}
    for name, r in uno.items():
        verdict = "fits" if r["fits"] else "does not fit"
        print(
            f"tinychat {name} on arduino-uno: Flash {r['flash_bytes']} / {r['flash_limit']} B, SRAM "
            f"{r['sram_bytes']} / {r['sram_limit']} B, {r['latency_ms']:.1f} ms → {verdict}"
        )
    expected = {"fp32": False, "int8": False, "pruned50_w2a8": True}
    return {
        "architecture": "256-256-192-128-40 (mlp, input 256, 40 classes)",
        "arduino_uno": uno,
        "expected_fits": expected,
        "as_expected": {k: uno[k]["fits"] == v for k, v in expected.items()},
        "all_devices": tiny,
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few blocks' repeats, 10 architectures")
    parser.add_argument(
        "--compare", action="store_true", help="also build and validate ort-cpu-nchwc (ORT defaults, NCHWc layout on)"
    )
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--tinychat-only", action="store_true", help="recompute only the (analytic) tinychat_mlp entry of --out"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out or ROOT / f"benchmarks/results/{'lut-quick' if args.quick else 'lut'}.json")
    if args.tinychat_only:  # model figures, no timing: the rest of the file stays as measured
        out.write_text(json.dumps({**json.loads(out.read_text()), "tinychat_mlp": tinychat_entry()}, indent=2) + "\n")
        return
    config = load_config(ROOT / "studies/quickstart.toml")
    quick = args.quick
    n_archs = 10 if quick else 100
    opts = {"rounds": 1, "repeats": 20} if quick else {"rounds": ROUNDS, "repeats": REPEATS}
    val_rounds = 1 if quick else ROUNDS
    devices = ["ort-cpu", "ort-cpu-nchwc"] if args.compare and not quick else ["ort-cpu"]
    started = time.perf_counter()
    load_before = _load()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="jointnas-lut-") as tmp:
        for device in devices:
            table = Path(tmp) / f"lut-{device}.json"
            t0 = time.perf_counter()
            build = build_table(config, device, table, n_calibration=8 if quick else 40, **opts)
            build_s = time.perf_counter() - t0
            report = validate_table(config, device, table, n_archs=n_archs, rounds=val_rounds, repeats=20, seed=1)
            results[device] = {
                "build": {**build, "wall_s": build_s, "goal_s": 300, "meets_goal": build_s <= 300},
                "validate": {k: v for k, v in report.items() if k != "samples"},
                "validate_samples": report["samples"],
                "load_avg_after": _load(),
            }
            cal = report["calibrated"]
            print(
                f"{device}: {build['blocks']} blocks built in {build_s:.0f} s; {n_archs} archs: raw ρ "
                f"{report['raw']['spearman']:.3f} / ±10% {report['raw']['within_10pct']:.0%}; calibrated ρ "
                f"{cal['spearman']:.3f} τ {cal['kendall']:.3f} / ±10% {cal['within_10pct']:.0%} / ±20% "
                f"{cal['within_20pct']:.0%}",
                flush=True,
            )
    main_cal = results["ort-cpu"]["validate"]["calibrated"]
    result = {
        "config": "studies/quickstart.toml",
        "quick": quick,
        "goals": {
            "build_s_max": 300,
            "calibrated_spearman_min": 0.95,
            "calibrated_within_10pct_min": 0.90,
            "met": {
                "build_time": results["ort-cpu"]["build"]["wall_s"] <= 300,
                "spearman": main_cal["spearman"] >= 0.95,
                "within_10pct": main_cal["within_10pct"] >= 0.90,
            },
        },
        "devices": results,
        "tinychat_mlp": tinychat_entry(),
        "wall_s": time.perf_counter() - started,
        "cpu_count": os.cpu_count(),
        "load_avg_before": load_before,
        "load_avg_after": _load(),
        "command": "python benchmarks/lut.py" + (" --quick" if quick else "") + (" --compare" if args.compare else ""),
        "notes": (
            "see load averages for other jobs; every pass is the median of short samples, and blocks / models are "
            "timed in at least devices.ROUNDS interleaved passes spread over at least devices.MIN_SPAN_S seconds, "
            "each keeping its fastest pass (the VM's uncontended state)"
        ),
        "fingerprint": device_fingerprint(),
        "versions": versions(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
