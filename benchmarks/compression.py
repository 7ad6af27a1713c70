"""Compression benchmark: every method on the digits CNN and MLP, measured.

For each family one FP32 model is trained; every method starts from a copy of it, compresses it and
fine-tunes it with the one training loop (`jointnas.compression.train`), then the deployable model is
measured: test accuracy, params (weights + biases), MACs, Flash bytes (`estimate_flash_bytes`, checked
against the packed C array's size), ONNX file size and ONNX Runtime latency (batch 1, 1 thread, median).
INT8 rows are ONNX Runtime post-training quantization of the FP32 file (static QDQ for the CNN,
dynamic for the MLP) and are evaluated with ONNX Runtime.

Fake-quantized (QAT) models are exported as FP32 graphs with their de-quantized weights baked in and
PACT activation quantizers as Clip/Round arithmetic, so their ORT latency shows no integer speed-up;
their gain is Flash (packed 1-8 bit weights), which a microcontroller runtime reads.

``fp16`` rows store the QAT weights as IEEE half: float16 ONNX initializers behind a Cast (ORT's CPU
provider has no float16 Conv/Gemm), 2 bytes a weight in Flash.

Per-layer vs per-stage precision (``--precision``, also part of the full run): two NSGA-II studies of the
quickstart space with the same trial budget, one with ``granularity = "stage"`` and one with
``granularity = "layer"``, objectives accuracy and Flash (latency is left out: ONNX Runtime runs every
precision as float, so it carries no precision signal, only timing noise); the hypervolume of each
study's feasible trials against one reference point, and the float16 ONNX file against the FP32 one
(size, ORT latency) on the benchmark CNN.

Run: ``python benchmarks/compression.py`` (about 15 minutes on 2 cores), ``--quick`` (a smoke test) or
``--precision`` (only the precision rows, about 5 minutes; merged into the result file).
Writes ``benchmarks/results/compression.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from jointnas.compression import (  # noqa: E402
    SparsityConfig,
    TrainConfig,
    accuracy,
    deployable_model,
    export_onnx,
    factorize_low_rank,
    generate_c_library,
    gradual_prune,
    onnx_logits,
    prune_channels,
    quantize_model,
    quantize_onnx_int8,
    train,
)
from jointnas.devices import estimate_flash_bytes, ort_session, time_session  # noqa: E402
from jointnas.objectives import TaskConfig, load_task  # noqa: E402
from jointnas.spaces import Candidate, Stage, trace_layers  # noqa: E402
from jointnas.spaces import build_model as build  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "compression.json"

# The benchmark CNN: MobileNetV2-style, 3 stages on 8x8 digits. Wide enough (about 0.5 M weights,
# 5 M MACs, ~0.1 ms in ONNX Runtime on one thread) that per-operator work, not the ~10 µs ORT call
# overhead, decides latency; small enough to train in about a minute on one core.
CNN = Candidate(
    "cnn",
    (1, 8, 8),
    10,
    (Stage(48, 1, 3, 4, 1), Stage(96, 2, 3, 4, 2), Stage(192, 2, 3, 4, 2)),
    stem_channels=32,
)
CNN_QUICK = Candidate("cnn", (1, 8, 8), 10, (Stage(16, 1, 3, 2, 1), Stage(32, 1, 3, 2, 2)), stem_channels=16)
MLP = Candidate("mlp", (1, 8, 8), 10, (Stage(256), Stage(128)))


def with_plan(c: Candidate, head_bits: int | None = None, **knobs) -> Candidate:
    c = dataclasses.replace(c, stages=tuple(dataclasses.replace(s, **knobs) for s in c.stages))
    return c if head_bits is None else dataclasses.replace(c, head_bits=head_bits)


def finetune(model: nn.Module, task, cfg: TrainConfig, seed: int, teacher: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(seed)
    train(model, task.x_train, task.y_train, cfg, teacher=teacher, generator=torch.Generator().manual_seed(seed))
    return model


def method_models(family: str, base: nn.Module, cand: Candidate, task, ft: TrainConfig, quick: bool):
    """Yield (method, description, deployable model) for every compression method."""

    def copy_base() -> nn.Module:
        return copy.deepcopy(base).train()

    yield "fp32", "trained FP32 model (BN folded)", deployable_model(base)

    plan = with_plan(cand, prune_ratio=0.5)
    yield (
        "prune50",
        "structured, 50% of channels (hidden + residual-tied outputs), L1, fine-tuned",
        deployable_model(finetune(prune_channels(copy_base(), plan, "l1", scope="all"), task, ft, 0)),
    )
    if family == "cnn":
        yield (
            "prune50_hidden",
            "structured, 50% of hidden (expanded) channels only, L1, fine-tuned",
            deployable_model(finetune(prune_channels(copy_base(), plan, "l1", scope="hidden"), task, ft, 0)),
        )
    plan = with_plan(cand, rank_ratio=0.25 if family == "cnn" else 0.125)
    yield (
        "lowrank",
        f"SVD of 1x1 convs / linears at rank ratio {plan.stages[0].rank_ratio}, fine-tuned",
        deployable_model(finetune(factorize_low_rank(copy_base(), plan), task, ft, 0)),
    )
    model = copy_base()
    pruner = gradual_prune(model, task.x_train, task.y_train, ft, SparsityConfig(0.8, "cubic", "global"))
    pruner.fold(model)
    yield "sparse80", "unstructured magnitude, 80% global, cubic schedule during fine-tuning", deployable_model(model)

    calib = task.x_train[:512]
    for bits, method in [(8, "maxabs"), (4, "maxabs"), (4, "lsq"), (4, "dorefa"), (2, "lsq"), (1, "maxabs")]:
        if quick and (bits, method) not in {(8, "maxabs"), (4, "maxabs"), (1, "maxabs")}:
            continue
        plan = with_plan(cand, head_bits=8, weight_bits=bits, act_bits=8)
        name = "binary" if bits == 1 else f"qat{bits}" + ("" if method == "maxabs" else f"_{method}")
        model = quantize_model(copy_base(), plan, calibration=calib, weight_quantizer=method)
        what = "binary weights (sign·mean|w|)" if bits == 1 else f"{bits}-bit {method} weights"
        yield name, f"QAT: {what}, 8-bit PACT activations, 8-bit head", deployable_model(finetune(model, task, ft, 0))

    plan = with_plan(cand, head_bits=8, weight_bits="fp16", act_bits=32)
    model = quantize_model(copy_base(), plan, calibration=calib)
    yield (
        "fp16",
        "IEEE half weights (float16 storage), float activations, 8-bit head",
        deployable_model(finetune(model, task, ft, 0)),
    )

    plan = with_plan(cand, head_bits=8, prune_ratio=0.5, weight_bits=4, act_bits=8)
    model = finetune(prune_channels(copy_base(), plan, "l1", scope="all"), task, ft, 0)
    model = finetune(quantize_model(model, plan, calibration=calib), task, ft, 0)
    yield "prune50+qat4", "structured 50% then 4-bit QAT (each fine-tuned)", deployable_model(model)


def measure_latencies(paths: dict[str, Path], x: np.ndarray, rounds: int, repeats: int) -> dict[str, tuple]:
    """Median ORT latency (ms) per file, batch 1, 1 thread; files are timed round-robin so load drifts
    on a shared machine hit every model alike."""
    sessions = {k: ort_session(str(p), 1) for k, p in paths.items()}
    samples: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for k, s in sessions.items():
            median, _ = time_session(s, {"input": x}, warmup=10, repeats=repeats)
            samples[k].append(median)
    return {k: (statistics.median(v), statistics.pstdev(v) / statistics.fmean(v)) for k, v in samples.items()}


def run_family(family: str, cand: Candidate, task, args, workdir: Path) -> dict:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    base = build(cand)
    base_cfg = TrainConfig(epochs=args.train_epochs, lr=1e-2)
    ft = TrainConfig(epochs=args.finetune_epochs, lr=3e-3)
    train(base, task.x_train, task.y_train, base_cfg, generator=torch.Generator().manual_seed(0))
    base.eval()
    print(f"[{family}] FP32 trained in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    rows: dict[str, dict] = {}
    onnx_paths: dict[str, Path] = {}
    for name, what, model in method_models(family, base, cand, task, ft, args.quick):
        layers = trace_layers(model, cand.input_shape)
        flash = estimate_flash_bytes(layers)
        calibration = task.x_train[:512]
        c_bytes = generate_c_library(
            model, cand.input_shape, workdir / f"{family}_{name}", calibration=calibration
        ).weight_bytes
        path = export_onnx(model, task.x_train[:1], workdir / f"{family}_{name}.onnx")
        onnx_paths[name] = path
        rows[name] = {
            "method": name,
            "what": what,
            "accuracy": accuracy(model, task.x_test, task.y_test),
            "params": sum(layer.weight_numel + layer.bias_numel for layer in layers),
            "nonzero_params": sum(layer.weight_nonzero + layer.bias_numel for layer in layers),
            "macs": sum(layer.macs for layer in layers),
            "flash_bytes": flash,
            "c_array_bytes": c_bytes,
            "onnx_bytes": path.stat().st_size,
        }
        print(
            f"[{family}] {name}: acc {rows[name]['accuracy']:.4f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr
        )

    # INT8 post-training quantization of the FP32 ONNX file with ONNX Runtime.
    int8 = quantize_onnx_int8(onnx_paths["fp32"], workdir / f"{family}_int8.onnx", calibration=task.x_train[:512])
    onnx_paths["int8_ort"] = int8
    pred = onnx_logits(int8, task.x_test).argmax(1)
    ptq8 = deployable_model(quantize_model(copy.deepcopy(base), with_plan(cand, head_bits=8, weight_bits=8)))
    rows["int8_ort"] = {
        "method": "int8_ort",
        "what": "ONNX Runtime INT8 PTQ of the FP32 file: "
        + ("static QDQ, per-channel, calibrated on 512 training inputs" if family == "cnn" else "dynamic"),
        "accuracy": float((pred == task.y_test.numpy()).mean()),
        "params": rows["fp32"]["params"],
        "nonzero_params": rows["fp32"]["nonzero_params"],
        "macs": rows["fp32"]["macs"],
        # Flash of the same model as an 8-bit C library (per-channel max-abs codes).
        "flash_bytes": estimate_flash_bytes(trace_layers(ptq8, cand.input_shape)),
        "c_array_bytes": generate_c_library(
            ptq8, cand.input_shape, workdir / f"{family}_int8", calibration=task.x_train[:512]
        ).weight_bytes,
        "onnx_bytes": int8.stat().st_size,
    }

    x1 = task.x_test[:1].numpy()
    for name, (ms, cv) in measure_latencies(onnx_paths, x1, args.rounds, args.repeats).items():
        rows[name]["latency_ms"] = ms
        rows[name]["latency_cv_between_rounds"] = cv
    fp = rows["fp32"]
    for row in rows.values():
        row["accuracy_drop_pts"] = 100 * (fp["accuracy"] - row["accuracy"])
        row["latency_vs_fp32"] = row["latency_ms"] / fp["latency_ms"]
        row["flash_vs_fp32"] = row["flash_bytes"] / fp["flash_bytes"]
        row["onnx_bytes_vs_fp32"] = row["onnx_bytes"] / fp["onnx_bytes"]

    kd = kd_comparison(base, cand, task, ft, args.seeds)
    return {
        "candidate": cand.to_dict(),
        "train_epochs": args.train_epochs,
        "finetune_epochs": args.finetune_epochs,
        "rows": list(rows.values()),
        "kd_prune50": kd,
        "seconds": time.perf_counter() - t0,
    }


def kd_comparison(base: nn.Module, cand: Candidate, task, ft: TrainConfig, seeds: int) -> dict:
    """Test accuracy of the 50%-pruned model fine-tuned with and without KD from the FP32 model."""
    plan = with_plan(cand, prune_ratio=0.5)
    out: dict[str, list[float]] = {"no_kd": [], "kd": []}
    kd_cfg = dataclasses.replace(ft, kd_alpha=0.7, kd_temperature=4.0)
    for seed in range(seeds):
        for key, cfg, teacher in (("no_kd", ft, None), ("kd", kd_cfg, base)):
            torch.manual_seed(seed)
            # The seed picks the channels (random criterion) and the fine-tuning order, so runs differ.
            gen = torch.Generator().manual_seed(seed)
            model = prune_channels(copy.deepcopy(base).train(), plan, "random", gen, scope="all")
            finetune(model, task, cfg, seed, teacher)
            out[key].append(accuracy(model, task.x_test, task.y_test))

    def stats(v: list[float]) -> dict:
        return {"runs": v, "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}

    return {
        "kd_alpha": 0.7,
        "kd_temperature": 4.0,
        "criterion": "random",
        "no_kd": stats(out["no_kd"]),
        "kd": stats(out["kd"]),
    }


def checks(results: dict) -> dict:
    cnn = {r["method"]: r for r in results["families"]["cnn"]["rows"]}
    pr, i8 = cnn["prune50"], cnn["int8_ort"]
    q4 = cnn["qat4"]
    return {
        "cnn_prune50_latency_cut": {
            "value": 1 - pr["latency_vs_fp32"],
            "goal": ">= 0.30",
            "met": pr["latency_vs_fp32"] <= 0.7,
        },
        "cnn_int8_onnx_size_ratio": {
            "value": i8["onnx_bytes_vs_fp32"],
            "goal": "<= 0.30",
            "met": i8["onnx_bytes_vs_fp32"] <= 0.3,
        },
        "cnn_int8_accuracy_drop_pts": {
            "value": i8["accuracy_drop_pts"],
            "goal": "<= 1",
            "met": i8["accuracy_drop_pts"] <= 1,
        },
        "cnn_qat4_accuracy_drop_pts": {
            "value": q4["accuracy_drop_pts"],
            "goal": "<= 2",
            "met": q4["accuracy_drop_pts"] <= 2,
        },
        "cnn_binary_accuracy_drop_pts": {"value": cnn["binary"]["accuracy_drop_pts"], "goal": "as measured"},
        "flash_equals_c_array_bytes": {
            "met": all(r["flash_bytes"] == r["c_array_bytes"] for f in results["families"].values() for r in f["rows"])
        },
    }


def markdown(results: dict) -> str:
    lines = []
    for family, data in results["families"].items():
        lines.append(f"\n**{family}** (FP32: {data['rows'][0]['params']:,} params)\n")
        lines.append(
            "| method | test acc | Δ pts | params | MACs | Flash bytes | ONNX bytes | ORT ms (b1, 1 thr) | × FP32 |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in data["rows"]:
            lines.append(
                f"| {r['method']} | {r['accuracy']:.4f} | {-r['accuracy_drop_pts']:+.1f} | {r['params']:,} | "
                f"{r['macs']:,} | {r['flash_bytes']:,} | {r['onnx_bytes']:,} | {r['latency_ms']:.4f} | "
                f"{r['latency_vs_fp32']:.2f} |"
            )
        kd = data["kd_prune50"]
        lines.append(
            f"\nKD vs no-KD, 50%-pruned ({len(kd['kd']['runs'])} seeds, random channels): "
            f"no KD {100 * kd['no_kd']['mean']:.2f} ± {100 * kd['no_kd']['std']:.2f} %, "
            f"KD {100 * kd['kd']['mean']:.2f} ± {100 * kd['kd']['std']:.2f} %"
        )
    lines.append("\n| check | value | goal | met |\n|---|---|---|---|")
    for name, c in results["checks"].items():
        value = f"{c['value']:.3f}" if "value" in c else ""
        lines.append(f"| {name} | {value} | {c.get('goal', '')} | {c.get('met', '')} |")
    return "\n".join(lines)


def granularity_study(granularity: str, n_trials: int, epochs: tuple[int, int], workdir: Path):
    """One NSGA-II study of the quickstart space at ``granularity`` (accuracy and Flash objectives)."""
    from jointnas.search.config import apply_overrides, load_config
    from jointnas.search.study import create_or_resume, run_study

    text = (Path(__file__).parents[1] / "studies" / "quickstart.toml").read_text()
    text = text.replace("head_bits = [8]\n", f'head_bits = [8]\ngranularity = "{granularity}"\n')
    text = text.replace('metrics = ["accuracy", "latency_ms", "flash_bytes"]', 'metrics = ["accuracy", "flash_bytes"]')
    path = workdir / f"precision_{granularity}.toml"
    path.write_text(text)
    config = apply_overrides(
        load_config(path),
        **{
            "study.name": f"precision-{granularity}",
            "study.storage": f"sqlite:///{workdir / 'precision.db'}",
            "budget.n_trials": n_trials,
            "pipeline.train_epochs": epochs[0],
            "pipeline.finetune_epochs": epochs[1],
        },
    )
    return run_study(config, create_or_resume(config, config.study.storage), config_path=path)


def fp16_onnx(workdir: Path, rounds: int, repeats: int) -> dict:
    """The benchmark CNN's ONNX file with float16 weights vs FP32: size and ORT latency (untrained weights:
    neither depends on training)."""
    torch.manual_seed(0)
    model = build(CNN).eval()
    half = deployable_model(quantize_model(copy.deepcopy(model), with_plan(CNN, weight_bits="fp16"))).eval()
    x = torch.zeros(1, *CNN.input_shape)
    paths = {"fp32": export_onnx(model, x, workdir / "fp32.onnx"), "fp16": export_onnx(half, x, workdir / "fp16.onnx")}
    ms = measure_latencies(paths, x.numpy(), rounds, repeats)
    return {
        "candidate": CNN.to_dict(),
        "onnx_bytes": {k: p.stat().st_size for k, p in paths.items()},
        "latency_ms": {k: v[0] for k, v in ms.items()},
        "max_abs_logit_diff": float(np.abs(onnx_logits(paths["fp16"], x) - half(x).detach().numpy()).max()),
    }


def precision_rows(args, workdir: Path) -> dict:
    """Per-layer vs per-stage precision at the same trial budget: hypervolume of (accuracy, Flash)."""
    from jointnas.search.tools.workflows import hypervolume, points, reference_point

    t0 = time.perf_counter()
    studies = {
        g: granularity_study(g, args.precision_trials, args.precision_epochs, workdir) for g in ("stage", "layer")
    }
    pts = {g: points(s) for g, s in studies.items()}
    directions = ["maximize", "minimize"]
    ref = reference_point(list(pts.values()), directions)
    rows = {}
    for g, study in studies.items():
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        bit_params = [len([n for n in t.params if n.endswith(("_wbits", "_abits"))]) for t in complete]
        rows[g] = {
            "granularity": g,
            "trials": len(complete),
            "feasible": len(pts[g]),
            "hypervolume": hypervolume(pts[g], ref, directions),
            "best_val_accuracy": max((t.values[0] for t in complete), default=None),
            "smallest_flash_bytes": min((t.values[1] for t in complete), default=None),
            "mean_bit_params": statistics.fmean(bit_params) if bit_params else 0.0,
        }
    return {
        "space": "studies/quickstart.toml (weight_bits [2, 4, 8, 32], act_bits [8, 32]), NSGA-II, seed 0",
        "trials_each": args.precision_trials,
        "train_finetune_epochs": list(args.precision_epochs),
        "reference_point": ref.tolist(),
        "rows": rows,
        "fp16_onnx": fp16_onnx(workdir, args.rounds, args.repeats),
        "seconds": time.perf_counter() - t0,
    }


def precision_markdown(p: dict) -> str:
    lines = [
        f"\nPer-stage vs per-layer precision, {p['trials_each']} trials each (accuracy × Flash hypervolume):\n",
        "| granularity | trials | feasible | bit-width params | hypervolume | best val acc | smallest Flash |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in p["rows"].values():
        lines.append(
            f"| {r['granularity']} | {r['trials']} | {r['feasible']} | {r['mean_bit_params']:.1f} | "
            f"{r['hypervolume']:.4f} | {r['best_val_accuracy']:.4f} | {r['smallest_flash_bytes']:,.0f} |"
        )
    f = p["fp16_onnx"]
    lines.append(
        f"\nfp16 ONNX (benchmark CNN): {f['onnx_bytes']['fp16']:,} B vs FP32 {f['onnx_bytes']['fp32']:,} B, "
        f"ORT {f['latency_ms']['fp16']:.4f} ms vs {f['latency_ms']['fp32']:.4f} ms"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, 1 epoch: a smoke test")
    parser.add_argument("--precision", action="store_true", help="only the per-layer vs per-stage precision rows")
    parser.add_argument("--out", type=Path, default=None, help=f"result file (default {RESULTS}; --quick: a temp file)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.train_epochs, args.finetune_epochs = (1, 1) if args.quick else (15, 4)
    args.seeds = 2 if args.quick else 3
    args.rounds, args.repeats = (2, 5) if args.quick else (5, 15)
    args.precision_trials, args.precision_epochs = (3, (1, 1)) if args.quick else (20, (4, 2))
    # A smoke test's figures are not results: --quick writes next to the system's temporary files.
    out = args.out or (Path(tempfile.gettempdir()) / "compression_quick.json" if args.quick else RESULTS)
    if args.precision:
        return _precision_only(args, out)
    task = load_task(TaskConfig())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        families = {
            "cnn": run_family("cnn", CNN_QUICK if args.quick else CNN, task, args, Path(tmp)),
            "mlp": run_family("mlp", MLP, task, args, Path(tmp)),
        }
        precision = precision_rows(args, Path(tmp))
    results = {
        "benchmark": "compression",
        "quick": args.quick,
        "notes": "measured while other jobs shared the 2-core machine; latencies are medians of round-robin "
        "rounds, each the median of repeated timed batches (devices.time_session)",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__},
        "dataset": "digits (sklearn), test split 20%",
        "families": families,
        "precision_granularity": precision,
        "seconds": time.perf_counter() - t0,
    }
    results["checks"] = checks(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results) + precision_markdown(precision))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def _precision_only(args, out: Path) -> int:
    """``--precision``: the precision rows alone, merged into ``out`` (the other figures kept as they are)."""
    with tempfile.TemporaryDirectory() as tmp:
        precision = precision_rows(args, Path(tmp))
    results = json.loads(out.read_text()) if out.is_file() else {"benchmark": "compression"}
    results["precision_granularity"] = precision
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(precision_markdown(precision))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
