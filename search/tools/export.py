"""Export of a chosen trial: rebuild, retrain, compress, write deployable files and a report.

`export_trial` rebuilds the trial's candidate (user attr ``candidate``) and runs it through the same
pipeline with the study's stored config and the trial's seed, so without options it reproduces the
trial's model. The pipeline's teacher (the trained, uncompressed model) is the FP32 baseline the
``[requirements]`` are checked against; with ``distill=True`` every fine-tune also distils from it.

Files written to ``out``: ``model.onnx`` (FP32, deployable form: see `float_deployable`),
``model.int8.onnx`` (ONNX Runtime static QDQ INT8 of it, calibrated on training inputs),
``baseline.onnx`` (the uncompressed model),
``c/`` (the C inference library for microcontrollers, `jointnas.compression.generate_c_library`, with an
Arduino sketch in ``c/arduino/model/``), ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from jointnas.compression import (
    accuracy,
    export_onnx,
    fold_batchnorm,
    generate_c_library,
    onnx_logits,
    quantize_onnx_int8,
    run_pipeline,
)
from jointnas.devices import ROUNDS, DeviceProfile, load_profile, measure_onnx_ms, open_latency_model
from jointnas.objectives import load_task
from jointnas.objectives.evaluate import model_costs
from jointnas.spaces import Candidate, UserInputError

from ..attrs import STUDY_CONFIG
from ..config import StudyConfig, parse_config
from ..requirements import check_requirements
from ..study import device_profile_ref, load_study
from .mcu import measure_export, render_build_markdown

if TYPE_CHECKING:
    from torch import nn

    from jointnas.objectives import TaskData

    from .steps import Steps

DISTILL_ALPHA = 0.5
"""Weight of the distillation term when ``--distill`` is given and the study's config sets none."""
CALIBRATION_SAMPLES = 512
"""Training inputs used to calibrate INT8 activation ranges (ONNX, C library)."""


def study_config(study: optuna.Study) -> StudyConfig:
    """The config stored in a jointnas study (its canonical form, validated again)."""
    stored = study.user_attrs.get(STUDY_CONFIG)
    if stored is None:
        raise UserInputError(f"study {study.study_name!r} was not made by jointnas; export needs its stored config")
    return parse_config(stored, f"config stored in study {study.study_name!r}")


def complete_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """The trial numbered ``number``, which must be COMPLETE and carry its candidate."""
    trials = study.get_trials(deepcopy=False)
    match = [t for t in trials if t.number == number]
    if not match:
        last = trials[-1].number if trials else None
        span = f"0..{last}" if last is not None else "none"
        raise UserInputError(f"trial {number} does not exist in study {study.study_name!r} (trials: {span})")
    trial = match[0]
    if trial.state != TrialState.COMPLETE:
        reason = trial.user_attrs.get("fail_reason")
        why = f" ({reason})" if reason else ""
        raise UserInputError(
            f"trial {number} is {trial.state.name}{why}, not COMPLETE; export a COMPLETE trial "
            "(see `jointnas pareto` or `jointnas trials`)"
        )
    if "candidate" not in trial.user_attrs:
        raise UserInputError(f"trial {number} has no recorded candidate; it was not made by jointnas")
    return trial


@contextlib.contextmanager
def _quiet_ort_quantization() -> Iterator[None]:
    # ONNX Runtime's quantizer logs a pre-processing hint on the root logger for every model.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def float_deployable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in float deployment form: every PACT activation fake-quantizer becomes its clip.

    Fake-quant simulates integer activations during training; a float runtime has no use for its
    rounding (``Clip → Div → Round → Mul`` per layer, which costs as much as a small convolution on a
    CPU). The trained clipping level stays, as a ``Clip`` that ONNX Runtime fuses into the preceding
    convolution: ``ReLU`` then an unsigned clip ``[0, α]`` is that clip alone. Weights stay as trained
    (quantized values baked in). This is the model the latency table describes for float (``ort``)
    devices, and the one the INT8 export quantizes: ONNX Runtime's calibration then finds the clipping
    range ``[0, α]``, i.e. the 8-bit grid the trial trained with.
    """
    import copy

    from torch import nn as tnn

    from jointnas.compression.quantization import PACT

    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, PACT):
                continue
            lo, hi = child.clip_range()
            if child_name == "out_quant" and not child.signed and isinstance(getattr(module, "act", None), tnn.ReLU):
                module.act = tnn.Identity()  # clip(relu(x), 0, α) == clip(x, 0, α)
            setattr(module, child_name, tnn.Hardtanh(lo, hi))
    return model


def _onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    return float((onnx_logits(path, x).argmax(1) == y).mean())


def _c_library(model: nn.Module, task: TaskData, out: Path) -> dict[str, Any]:
    """The C inference library in ``out / "c"`` (`generate_c_library`); its weight bytes are the Flash estimate."""
    encoder = task.encoder
    labels = None if encoder is None else [*encoder["alphabet"].replace(" ", "_"), "<end>"]
    lib = generate_c_library(
        model,
        task.input_shape,
        out / "c",
        normalization=task.normalization,
        class_labels=labels,
        name="model",
        calibration=task.x_train[:CALIBRATION_SAMPLES],
        encoder=encoder,
    )
    return {
        "written": True,
        "files": [str(p.relative_to(out)) for p in lib.files],
        "array_bytes": lib.weight_bytes,
        "arena_bytes": lib.arena_bytes,
        "input_type": lib.input_type,
        "integer_layers": sum(layer.mode == "int" for layer in lib.layers),
        "layers": len(lib.layers),
    }


def _c_build(model: nn.Module, task: TaskData, out: Path, onnx_path: Path, profile: DeviceProfile) -> dict[str, Any]:
    """`measure_export` of ``out / "c"``: host build on the test split against torch and ONNX, then the board."""
    import tempfile

    import torch

    x_test = task.x_test
    with torch.no_grad():
        torch_classes = model.eval()(x_test).argmax(1).numpy()
    references = {"torch": torch_classes, "model.onnx": onnx_logits(onnx_path, x_test.numpy()).argmax(1)}
    raw = task.normalization.invert(x_test.numpy(), task.input_shape)
    with tempfile.TemporaryDirectory(prefix="jointnas-cbuild-") as work:
        return measure_export(
            out / "c",
            profile,
            Path(work),
            raw=raw,
            labels=task.y_test.numpy(),
            references=references,
            num_classes=task.num_classes,
            text=task.encoder is not None,
        )


def export_trial(
    study: optuna.Study,
    number: int,
    out: str | Path,
    *,
    retrain_epochs: int | None = None,
    distill: bool = False,
    deploy: Literal["int8", "fp32"] = "int8",
    lut: Path | None = None,
    progress: Steps | None = None,
) -> dict[str, Any]:
    """Rebuild, retrain and compress trial ``number`` of ``study``; write its files and report to ``out``.

    Args:
        study: a jointnas study (its stored config drives everything).
        number: trial number; the trial must be COMPLETE.
        out: output folder (created).
        retrain_epochs: initial training epochs (default: the study's ``pipeline.train_epochs``).
        distill: distil every fine-tune from the uncompressed teacher (``kd_alpha`` 0.5 unless set).
        deploy: which file the requirements judge: ``int8`` (``model.int8.onnx``) or ``fp32`` (``model.onnx``).
        lut: latency table file to predict with (default: a fresh in-memory table measured now).
        progress: optional step progress to advance.

    Returns:
        The report (also written as ``report.json`` and ``report.md``). Accuracies are fractions of the
        test split, latencies milliseconds (batch 1, the study's thread count), sizes bytes.
    """
    import torch

    config = study_config(study)
    trial = complete_trial(study, number)
    candidate = Candidate.from_dict(trial.user_attrs["candidate"])
    seed = int(trial.user_attrs.get("seed", config.study.seed + trial.number))
    pipeline = config.pipeline
    overrides: dict[str, Any] = {}
    if retrain_epochs is not None:
        if retrain_epochs < 0:
            raise UserInputError(f"--retrain-epochs {retrain_epochs} is negative; give 0 or more epochs")
        overrides["train_epochs"] = retrain_epochs
    if distill and pipeline.kd_alpha == 0:
        overrides["kd_alpha"] = DISTILL_ALPHA
    pipeline = pipeline.model_copy(update=overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = config.device

    def step(name: str):
        return progress.step(name) if progress is not None else contextlib.nullcontext()

    if progress is not None:
        progress.add(7 + 1 + len(pipeline.steps))
    with step("load task"):
        task = load_task(config.task)

    last = [time.perf_counter()]

    def on_step(name: str, model: nn.Module) -> dict[str, float]:
        if progress is not None:
            progress.mark(f"pipeline: {name}", time.perf_counter() - last[0])
        last[0] = time.perf_counter()
        return {}

    # Retrain with the thread count the trial trained with: CPU kernels reduce in a thread-dependent order,
    # so another count gives another model (trials from before this attr: keep the process default).
    threads = int(trial.user_attrs.get("torch_threads", torch.get_num_threads()))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    result = run_pipeline(
        candidate, task.x_train, task.y_train, task.x_val, task.y_val, pipeline, seed=seed, on_step=on_step
    )
    model = result.model
    baseline = fold_batchnorm(result.teacher)
    x_test, y_test = task.x_test.numpy(), task.y_test.numpy()
    example = task.x_train[:1]

    with step("export ONNX (FP32, INT8, baseline)"):
        fp32_path = export_onnx(float_deployable(model), example, out / "model.onnx")
        int8_path = quantize_onnx_int8(
            fp32_path, out / "model.int8.onnx", calibration=task.x_train[:CALIBRATION_SAMPLES]
        )
        base_path = export_onnx(baseline, example, out / "baseline.onnx")
    with step("C library"):
        c_array = _c_library(model, task, out)
    with step("accuracy (torch, ONNX FP32, ONNX INT8)"):
        acc = {
            "torch": accuracy(model, task.x_test, task.y_test),
            "onnx_fp32": _onnx_accuracy(fp32_path, x_test, y_test),
            "onnx_int8": _onnx_accuracy(int8_path, x_test, y_test),
            "baseline_torch": accuracy(baseline, task.x_test, task.y_test),
            "baseline_onnx_fp32": _onnx_accuracy(base_path, x_test, y_test),
            "trial_reported_test": trial.user_attrs.get("test_accuracy"),
            "trial_reported_val": trial.user_attrs.get("val_accuracy"),
        }
    with step("C library built and run (host; the board's toolchain and simulator)"):
        c_build = _c_build(model, task, out, fp32_path, load_profile(device_profile_ref(config, None)))
    with step("latency table prediction"):
        # The study's latency model (`open_latency_model`, as the search used it). Without ``lut`` an
        # ORT table is measured now, next to the end-to-end measurement, so both see the same machine
        # load; the trial's recorded prediction is reported as well.
        table = open_latency_model(
            device_profile_ref(config, None), lut, threads=device.threads, warmup=device.warmup, repeats=device.repeats
        )
        costs = model_costs(model, task.input_shape, table)
        base_costs = model_costs(baseline, task.input_shape, table)
        raw = table.predict_raw_ms(costs["layers"]) if hasattr(table, "predict_raw_ms") else costs["latency_ms"]
        calibration = getattr(table, "calibration", None)
    with step("measure ONNX Runtime latency"):
        files = {"onnx_fp32": fp32_path, "onnx_int8": int8_path, "baseline_onnx_fp32": base_path}
        # Interleaved passes over all files, each file's fastest kept, as the latency table is timed.
        timings = measure_onnx_ms(
            [p.read_bytes() for p in files.values()],
            device.threads,
            max(device.warmup, 20),
            max(device.repeats, 20),
            rounds=2 * ROUNDS,
            disabled_optimizers=getattr(table, "disabled", ()),
        )
        lat = {name: ms for name, (ms, _) in zip(files, timings, strict=True)}
    predicted = costs["latency_ms"]
    latency = {
        "lut_predicted": predicted,
        "lut_block_sum": raw,
        "lut_calibrated": calibration is not None,
        "lut_blocks": len(table.blocks(costs["layers"])) if hasattr(table, "blocks") else None,
        "device": getattr(table, "device", config.device.name),
        "lut_file": str(lut) if lut is not None else None,
        "trial_reported_lut": trial.user_attrs.get("latency_ms"),
        "measured_onnx_fp32": lat["onnx_fp32"],
        "measured_onnx_int8": lat["onnx_int8"],
        "measured_baseline_onnx_fp32": lat["baseline_onnx_fp32"],
        "baseline_lut_predicted": base_costs["latency_ms"],
        "baseline_vs_lut": lat["baseline_onnx_fp32"] / base_costs["latency_ms"] - 1.0,
        "fp32_vs_lut": lat["onnx_fp32"] / predicted - 1.0,
        "fp32_vs_lut_block_sum": lat["onnx_fp32"] / raw - 1.0,
        "threads": device.threads,
    }
    sizes = {
        "model_onnx_bytes": fp32_path.stat().st_size,
        "model_int8_onnx_bytes": int8_path.stat().st_size,
        "baseline_onnx_bytes": base_path.stat().st_size,
        "flash_estimate_bytes": costs["flash_bytes"],
        "trial_reported_flash_bytes": trial.user_attrs.get("flash_bytes"),
        "baseline_flash_estimate_bytes": base_costs["flash_bytes"],
        "sram_estimate_bytes": costs["sram_bytes"],
        "c_array": c_array,
    }
    for name in c_array.get("files", []):
        sizes[f"{name}_bytes"] = (out / name).stat().st_size
    base_fig = {"accuracy": acc["baseline_onnx_fp32"], "latency_ms": lat["baseline_onnx_fp32"]}
    base_fig["size_bytes"] = sizes["baseline_onnx_bytes"]
    kind = "onnx_int8" if deploy == "int8" else "onnx_fp32"
    artifact = "model.int8.onnx" if deploy == "int8" else "model.onnx"
    deployed = {"accuracy": acc[kind], "latency_ms": lat[kind], "size_bytes": (out / artifact).stat().st_size}
    checks = check_requirements(config.requirements, base_fig, deployed)
    reported = acc["trial_reported_test"]
    reproduced = (
        None if reported is None or retrain_epochs is not None or distill else abs(acc["torch"] - reported) <= 0.005
    )
    report = {
        "study": study.study_name,
        "trial": trial.number,
        "seed": seed,
        "candidate": candidate.to_dict(),
        "pipeline": json.loads(pipeline.model_dump_json()),
        "retrain_epochs": retrain_epochs,
        "distill": distill,
        "accuracy": acc,
        "latency_ms": latency,
        "sizes": sizes,
        "deployed": {"artifact": artifact, **deployed},
        "baseline": {"artifact": "baseline.onnx", **base_fig},
        "c_build": c_build,
        "requirements": [c.to_dict() for c in checks],
        "requirements_passed": all(c.passed for c in checks) if checks else None,
        "reproduced_trial": reproduced,
        "acceptance": {
            "int8_within_1pt_of_trial": None if reported is None else abs(acc["onnx_int8"] - reported) <= 0.01,
            "fp32_latency_within_15pct_of_lut": abs(latency["fp32_vs_lut"]) <= 0.15,
        },
        "files": sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("report.")),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    (out / "report.md").write_text(render_markdown(report))
    return report


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown a team can read: accuracy, latency, sizes, requirement checks."""
    acc, lat, size = report["accuracy"], report["latency_ms"], report["sizes"]
    cal = "calibrated block sum" if lat["lut_calibrated"] else "uncalibrated block sum"
    lines = [
        f"# Export of trial {report['trial']} of study `{report['study']}`",
        "",
        f"Seed {report['seed']}; initial training {report['pipeline']['train_epochs']} epochs; "
        f"steps {', '.join(report['pipeline']['steps']) or 'none'}; "
        f"distillation {'on (alpha ' + str(report['pipeline']['kd_alpha']) + ')' if report['distill'] else 'off'}.",
        "",
        "## Accuracy (test split)",
        "",
        "| model | accuracy |",
        "|---|---:|",
        f"| trial as reported by the search | {_pct(acc['trial_reported_test'])} |",
        f"| torch (compressed, fake-quant) | {_pct(acc['torch'])} |",
        f"| model.onnx (FP32: activation clips kept, fake-quant rounding dropped) | {_pct(acc['onnx_fp32'])} |",
        f"| model.int8.onnx (INT8) | {_pct(acc['onnx_int8'])} |",
        f"| baseline.onnx (uncompressed FP32) | {_pct(acc['baseline_onnx_fp32'])} |",
        "",
        f"## Latency (ONNX Runtime, batch 1, {lat['threads']} thread(s), fastest of interleaved passes)",
        "",
        "| | ms |",
        "|---|---:|",
        f"| latency model prediction ({lat['device']}, {cal}) | {lat['lut_predicted']:.4f} |",
        f"| sum of the table's {lat['lut_blocks']} block entries | {_ms(lat['lut_block_sum'])} |",
        f"| prediction recorded by the search | {_ms(lat['trial_reported_lut'])} |",
        f"| measured model.onnx (FP32) | {lat['measured_onnx_fp32']:.4f} ({100 * lat['fp32_vs_lut']:+.1f}% vs "
        "prediction) |",
        f"| measured model.int8.onnx | {lat['measured_onnx_int8']:.4f} |",
        f"| measured baseline.onnx | {lat['measured_baseline_onnx_fp32']:.4f} (prediction "
        f"{lat['baseline_lut_predicted']:.4f}, {100 * lat['baseline_vs_lut']:+.1f}%) |",
        "",
        "## Sizes (bytes)",
        "",
        "| | bytes |",
        "|---|---:|",
        f"| Flash estimate (packed weights, scales, biases) | {size['flash_estimate_bytes']} |",
        f"| SRAM estimate (peak live activations) | {size['sram_estimate_bytes']} |",
        f"| C library weights (packed weights, scales, biases) | {size['c_array'].get('array_bytes') or '-'} |",
        f"| C library activation arena (RAM) | {size['c_array'].get('arena_bytes') or '-'} |",
        f"| model.onnx | {size['model_onnx_bytes']} |",
        f"| model.int8.onnx | {size['model_int8_onnx_bytes']} |",
        f"| baseline.onnx | {size['baseline_onnx_bytes']} |",
    ]
    for name in size["c_array"].get("files", []):
        lines.append(f"| {name} | {size[f'{name}_bytes']} |")
    lines += ["", *render_build_markdown(report["c_build"])] if "c_build" in report else [""]
    lines += [f"## Requirements ({report['deployed']['artifact']} vs baseline.onnx)", ""]
    if not report["requirements"]:
        lines.append("No `[requirements]` in the study config.")
    else:
        lines += ["| requirement | required | measured | result |", "|---|---:|---:|---|"]
        for c in report["requirements"]:
            lines.append(
                f"| {c['name']} | {c['required']:.4g} | {c['measured']:.4g} | {'PASS' if c['passed'] else 'FAIL'} |"
            )
    return "\n".join(lines) + "\n"


def open_and_export(storage: Any, study_name: str, number: int, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """`export_trial` on the study named ``study_name`` in ``storage`` (exit 2 if it does not exist)."""
    return export_trial(load_study(storage, study_name), number, out, **kwargs)


__all__ = [
    "complete_trial",
    "export_trial",
    "float_deployable",
    "open_and_export",
    "render_markdown",
    "study_config",
]
