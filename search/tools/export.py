"""Export of a chosen trial: its stored model (or a retrained one) as deployable files and a report.

`export_trial` reads the model the trial stored when it completed (`jointnas.search.artifacts`:
compressed weights, the uncompressed baseline it came from, normalization, class labels) and trains
nothing. With ``retrain=True`` it rebuilds the trial instead: the candidate (user attr ``candidate``)
runs through the trial's train step (`jointnas.objectives.train_candidate`: the task's augmentation,
the device's weight bit-widths) with the study's stored config and the trial's seed, so without other
options it reproduces the trial's model; ``retrain_epochs`` and ``distill`` change that rebuild.

Files written to ``out``: ``model.onnx`` (FP32, deployable form: see `float_deployable`),
``model.int8.onnx`` (ONNX Runtime static QDQ INT8 of it, calibrated on training inputs),
``baseline.onnx`` (the uncompressed model) — all three take the raw sample (normalization inside the
graph) and carry study, trial, class labels, input layout and normalization in ``metadata_props`` —,
``confusion.png`` (confusion matrices of the deployed model and its baseline), ``c/`` (the C inference
library for microcontrollers, `jointnas.compression.generate_c_library`, with an
Arduino sketch in ``c/arduino/model/``), ``report.json`` and ``report.md`` (`render_export_markdown`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from jointnas.compression import (
    PipelineConfig,
    export_onnx,
    fold_batchnorm,
    model_from_record,
    onnx_logits,
    quantize_onnx_int8,
)
from jointnas.devices import ROUNDS, DeviceProfile, load_profile, measure_onnx_ms, open_latency_model
from jointnas.objectives import load_task, train_candidate
from jointnas.objectives.board import CALIBRATION_SAMPLES, task_library
from jointnas.objectives.evaluate import model_costs
from jointnas.spaces import Candidate, UserInputError

from ..artifacts import load_stored_model, onnx_metadata, open_artifact_store
from ..attrs import STUDY_ARTIFACT_DIR, STUDY_CONFIG
from ..config import StudyConfig, parse_config
from ..paths import output_dir
from ..requirements import check_requirements, judged_figures
from ..study import device_profile_ref
from .diagnostics import class_diagnostics, write_confusion_png
from .mcu import measure_export
from .report import render_export_markdown

if TYPE_CHECKING:
    from torch import nn

    from jointnas.objectives import TaskData

    from .steps import Steps

DISTILL_ALPHA = 0.5
"""Weight of the distillation term when ``--distill`` is given and the study's config sets none."""
ONNX_FILES = {"onnx_fp32": "model.onnx", "onnx_int8": "model.int8.onnx", "baseline_onnx_fp32": "baseline.onnx"}
"""The ONNX files of an export by their key in the report."""


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


def _c_library(model: nn.Module, task: TaskData, out: Path) -> dict[str, Any]:
    """The C inference library in ``out / "c"`` (`generate_c_library`); its weight bytes are the Flash estimate."""
    lib = task_library(model, task, out / "c")
    return {
        "written": True,
        "files": [str(p.relative_to(out)) for p in lib.files],
        "array_bytes": lib.weight_bytes,
        "arena_bytes": lib.arena_bytes,
        "input_type": lib.input_type,
        "integer_layers": sum(layer.mode == "int" for layer in lib.layers),
        "layers": len(lib.layers),
    }


@dataclasses.dataclass
class ExportSource:
    """What an export starts from, all checked before anything is written."""

    study: optuna.Study
    config: StudyConfig
    trial: FrozenTrial
    candidate: Candidate
    seed: int
    pipeline: PipelineConfig
    retrain: bool
    distill: bool
    stored: tuple[Any, str] | None
    """(artifact store, artifact id) of the trial's stored model; ``None`` when retraining."""


def export_source(
    study: optuna.Study,
    number: int,
    *,
    retrain: bool = False,
    retrain_epochs: int | None = None,
    distill: bool = False,
    artifact_dir: str | Path | None = None,
) -> ExportSource:
    """Check an export's inputs (study, trial, options, stored model) without writing anything."""
    config = study_config(study)
    trial = complete_trial(study, number)
    if not retrain and (retrain_epochs is not None or distill):
        raise UserInputError("--retrain-epochs and --distill change a rebuild of the trial; add --retrain")
    overrides: dict[str, Any] = {}
    if retrain_epochs is not None:
        if retrain_epochs < 0:
            raise UserInputError(f"--retrain-epochs {retrain_epochs} is negative; give 0 or more epochs")
        overrides["train_epochs"] = retrain_epochs
    if distill and config.pipeline.kd_alpha == 0:
        overrides["kd_alpha"] = DISTILL_ALPHA
    stored = None if retrain else _stored_model_ref(study, trial, artifact_dir)
    return ExportSource(
        study,
        config,
        trial,
        Candidate.from_dict(trial.user_attrs["candidate"]),
        int(trial.user_attrs.get("seed", config.study.seed + trial.number)),
        config.pipeline.model_copy(update=overrides),
        retrain,
        distill,
        stored,
    )


def _stored_model_ref(study: optuna.Study, trial: FrozenTrial, artifact_dir: str | Path | None) -> tuple[Any, str]:
    model_id = (trial.user_attrs.get("artifacts") or {}).get("model")
    if model_id is None:
        raise UserInputError(
            f"trial {trial.number} stored no model (run without artifacts, or by an older jointnas); "
            "pass --retrain to rebuild it"
        )
    folder = artifact_dir or study.user_attrs.get(STUDY_ARTIFACT_DIR)
    if folder is None or not Path(folder).is_dir():
        where = f" ({folder} does not exist)" if folder else ""
        raise UserInputError(f"no artifact directory for study {study.study_name!r}{where}; pass --artifact-dir DIR")
    if not (Path(folder) / model_id).is_file():
        raise UserInputError(
            f"trial {trial.number}'s stored model {model_id} is not in {folder}; pass the study's --artifact-dir "
            "or --retrain"
        )
    return open_artifact_store(folder), model_id


def _retrained(src: ExportSource, task: TaskData, progress: Steps | None) -> tuple[nn.Module, nn.Module]:
    """The trial's train step again: (compressed model, BN-folded uncompressed baseline)."""
    import torch

    last = [time.perf_counter()]

    def on_step(name: str, model: nn.Module) -> dict[str, float]:
        if progress is not None:
            progress.mark(f"pipeline: {name}", time.perf_counter() - last[0])
        last[0] = time.perf_counter()
        return {}

    # Retrain with the thread count the trial trained with: CPU kernels reduce in a thread-dependent order,
    # so another count gives another model (trials from before this attr: keep the process default).
    threads = int(src.trial.user_attrs.get("torch_threads", torch.get_num_threads()))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    profile = load_profile(device_profile_ref(src.config, None))
    result = train_candidate(
        src.candidate,
        task,
        src.pipeline,
        seed=src.seed,
        supported_weight_bits=profile.supported_weight_bits,
        on_step=on_step,
    )
    return result.model, fold_batchnorm(result.teacher)


def _stored(src: ExportSource) -> tuple[nn.Module, nn.Module]:
    """The trial's stored model and its baseline (no training)."""
    store, model_id = src.stored
    record = load_stored_model(store, model_id)
    if record.get("teacher") is None:
        raise UserInputError(f"trial {src.trial.number}'s stored model has no baseline; pass --retrain")
    return model_from_record(record), fold_batchnorm(model_from_record(record["teacher"]))


def _c_build(
    task: TaskData, out: Path, raw: np.ndarray, pred: dict[str, Any], profile: DeviceProfile
) -> dict[str, Any]:
    """`measure_export` of ``out / "c"``: host build on the raw test split against torch and ONNX, then the board."""
    import tempfile

    references = {"torch": pred["torch"], "model.onnx": pred["onnx_fp32"]}
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


def _write_onnx(src: ExportSource, task: TaskData, model: nn.Module, baseline: nn.Module, out: Path) -> dict[str, Path]:
    """``model.onnx``, ``model.int8.onnx`` and ``baseline.onnx``, all taking raw samples."""
    meta = onnx_metadata(src.study.study_name, src.trial.number, task)
    example, norm = task.x_train[:1], task.normalization
    fp32 = export_onnx(
        float_deployable(model), example, out / ONNX_FILES["onnx_fp32"], normalization=norm, metadata=meta
    )
    raw_calibration = norm.invert(task.x_train[:CALIBRATION_SAMPLES].numpy(), task.input_shape)
    int8 = quantize_onnx_int8(fp32, out / ONNX_FILES["onnx_int8"], calibration=raw_calibration)
    base_meta = {**meta, "jointnas.model": "uncompressed baseline"}
    base = export_onnx(
        baseline, example, out / ONNX_FILES["baseline_onnx_fp32"], normalization=norm, metadata=base_meta
    )
    return {"onnx_fp32": fp32, "onnx_int8": int8, "baseline_onnx_fp32": base}


def _predictions(
    task: TaskData, model: nn.Module, baseline: nn.Module, files: dict[str, Path], raw_test: np.ndarray
) -> dict[str, Any]:
    """Predicted classes on the test split: torch on the normalized samples, the ONNX files on the raw ones."""
    import torch

    with torch.no_grad():
        pred = {"torch": model.eval()(task.x_test).argmax(1).numpy()}
        pred["baseline_torch"] = baseline.eval()(task.x_test).argmax(1).numpy()
    for name, path in files.items():
        pred[name] = onnx_logits(path, raw_test).argmax(1)
    return pred


def _accuracies(src: ExportSource, task: TaskData, pred: dict[str, Any]) -> dict[str, Any]:
    y_test = task.y_test.numpy()
    acc = {name: float((pred[name] == y_test).mean()) for name in ("torch", *ONNX_FILES, "baseline_torch")}
    acc["trial_reported_test"] = src.trial.user_attrs.get("test_accuracy")
    acc["trial_reported_val"] = src.trial.user_attrs.get("val_accuracy")
    return acc


def _diagnostics(task: TaskData, pred: dict[str, Any], judged: dict[str, Any], out: Path) -> dict[str, Any]:
    """Per-class accuracy and confusion matrices of the deployed model and its baseline; ``confusion.png``."""
    onnx = judged["deployed"]["artifact"] in (ONNX_FILES["onnx_int8"], ONNX_FILES["onnx_fp32"])
    kind = next((k for k, name in ONNX_FILES.items() if name == judged["deployed"]["artifact"]), "torch")
    models = {
        judged["deployed"]["artifact"]: pred[kind],
        judged["baseline"]["artifact"]: pred["baseline_onnx_fp32" if onnx else "baseline_torch"],
    }
    y_test = task.y_test.numpy()
    diag = {name: class_diagnostics(y_test, p, task.class_labels) for name, p in models.items()}
    write_confusion_png(diag, out / "confusion.png")
    return diag


def _latencies(
    src: ExportSource,
    task: TaskData,
    model: nn.Module,
    baseline: nn.Module,
    files: dict[str, Path],
    lut: Path | None,
    board: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Latency figures (prediction and ONNX Runtime measurement), with the model's and baseline's costs.

    The study's latency model (`open_latency_model`, as the search used it). Without ``lut`` an ORT table
    is measured now, next to the end-to-end measurement, so both see the same machine load; the trial's
    recorded prediction is reported as well. For a microcontroller (``board``: `measure_export`'s board
    part) this machine's ORT timings say nothing about the cycle model: their ratios to it are ``None``
    and the simulated milliseconds, where a simulator ran, take their place.
    """
    device = src.config.device
    table = open_latency_model(
        device_profile_ref(src.config, None), lut, threads=device.threads, warmup=device.warmup, repeats=device.repeats
    )
    costs = model_costs(model, task.input_shape, table, input_signed=task.input_signed)
    base_costs = model_costs(baseline, task.input_shape, table, input_signed=task.input_signed)
    table.save()  # entries measured now join ``lut`` (as in the search)
    raw = table.predict_raw_ms(costs["layers"]) if hasattr(table, "predict_raw_ms") else costs["latency_ms"]
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
        "lut_calibrated": getattr(table, "calibration", None) is not None,
        "lut_blocks": len(table.blocks(costs["layers"])) if hasattr(table, "blocks") else None,
        "device": getattr(table, "device", device.name),
        "lut_file": str(lut) if lut is not None else None,
        "trial_reported_lut": src.trial.user_attrs.get("latency_ms"),
        "measured_onnx_fp32": lat["onnx_fp32"],
        "measured_onnx_int8": lat["onnx_int8"],
        "measured_baseline_onnx_fp32": lat["baseline_onnx_fp32"],
        "baseline_lut_predicted": base_costs["latency_ms"],
        "baseline_vs_lut": lat["baseline_onnx_fp32"] / base_costs["latency_ms"] - 1.0,
        "fp32_vs_lut": lat["onnx_fp32"] / predicted - 1.0,
        "fp32_vs_lut_block_sum": lat["onnx_fp32"] / raw - 1.0,
        "threads": device.threads,
    }
    if board is not None:
        simulated = board.get("latency_ms")
        latency.update(fp32_vs_lut=None, fp32_vs_lut_block_sum=None, baseline_vs_lut=None, simulated_ms=simulated)
        latency["lut_vs_simulated"] = None if not simulated else predicted / simulated - 1.0
    return latency, costs, base_costs


def _sizes(src: ExportSource, files: dict[str, Path], costs: dict[str, Any], base_costs: dict[str, Any], c_lib, out):
    sizes = {
        "model_onnx_bytes": files["onnx_fp32"].stat().st_size,
        "model_int8_onnx_bytes": files["onnx_int8"].stat().st_size,
        "baseline_onnx_bytes": files["baseline_onnx_fp32"].stat().st_size,
        "flash_estimate_bytes": costs["flash_bytes"],  # the device's figure (an MCU's: the whole library)
        "weight_bytes": costs["weight_bytes"],
        "trial_reported_flash_bytes": src.trial.user_attrs.get("flash_bytes"),
        "baseline_flash_estimate_bytes": base_costs["flash_bytes"],
        "sram_estimate_bytes": costs["sram_bytes"],
        "c_array": c_lib,
    }
    for name in c_lib.get("files", []):
        sizes[f"{name}_bytes"] = (out / name).stat().st_size
    return sizes


def _requirements(src: ExportSource, deploy: str, acc: dict, lat: dict, sizes: dict) -> dict[str, Any]:
    """The ``[requirements]`` judged on what the study's device runs (`judged_figures`)."""
    kind, artifact = ("onnx_int8", "model.int8.onnx") if deploy == "int8" else ("onnx_fp32", "model.onnx")
    figures = {
        "accuracy_torch": acc["torch"],
        "accuracy_onnx": acc[kind],
        "baseline_accuracy_torch": acc["baseline_torch"],
        "baseline_accuracy_onnx": acc["baseline_onnx_fp32"],
        "latency_predicted": lat["lut_predicted"],
        "baseline_latency_predicted": lat["baseline_lut_predicted"],
        "latency_measured": lat[f"measured_{kind}"],
        "baseline_latency_measured": lat["measured_baseline_onnx_fp32"],
        "flash_bytes": sizes["flash_estimate_bytes"],
        "baseline_flash_bytes": sizes["baseline_flash_estimate_bytes"],
        "onnx_bytes": sizes["model_int8_onnx_bytes" if deploy == "int8" else "model_onnx_bytes"],
        "baseline_onnx_bytes": sizes["baseline_onnx_bytes"],
    }
    judged = judged_figures(load_profile(device_profile_ref(src.config, None)), artifact, figures)
    checks = check_requirements(src.config.requirements, judged.baseline, judged.model, judged.basis)
    return {
        "deployed": {"artifact": judged.artifact, **judged.model, "basis": judged.basis},
        "baseline": {"artifact": judged.baseline_artifact, **judged.baseline},
        "requirements": [c.to_dict() for c in checks],
        "requirements_passed": all(c.passed for c in checks) if checks else None,
    }


def export_trial(
    study: optuna.Study,
    number: int,
    out: str | Path,
    *,
    retrain: bool = False,
    retrain_epochs: int | None = None,
    distill: bool = False,
    deploy: Literal["int8", "fp32"] = "int8",
    lut: Path | None = None,
    artifact_dir: str | Path | None = None,
    progress: Steps | None = None,
) -> dict[str, Any]:
    """Write trial ``number``'s deployable files and report to ``out`` from its stored model (or a rebuild).

    Args:
        study: a jointnas study (its stored config drives everything).
        number: trial number; the trial must be COMPLETE.
        out: output folder (created).
        retrain: rebuild the model with the trial's train step instead of reading the stored one.
        retrain_epochs: initial training epochs of the rebuild (default: the study's ``pipeline.train_epochs``).
        distill: distil every fine-tune of the rebuild from the uncompressed teacher (``kd_alpha`` 0.5 unless set).
        deploy: the ONNX file an ONNX Runtime device runs: ``int8`` (``model.int8.onnx``) or ``fp32`` (``model.onnx``).
        lut: latency table file to predict with (default: a fresh in-memory table measured now).
        artifact_dir: the study's artifact store (default: the one the study records).
        progress: optional step progress to advance.

    Returns:
        The report (also written as ``report.json`` and ``report.md``). Accuracies are fractions of the
        test split, latencies milliseconds (batch 1, the study's thread count), sizes bytes; ``c_build``
        holds what the C library's builds measured (`measure_export`).
    """
    src = export_source(
        study, number, retrain=retrain, retrain_epochs=retrain_epochs, distill=distill, artifact_dir=artifact_dir
    )
    out = output_dir(out, "--out")
    out.mkdir(parents=True, exist_ok=True)

    def step(name: str):
        return progress.step(name) if progress is not None else contextlib.nullcontext()

    if progress is not None:
        progress.add(7 + (len(src.pipeline.steps) + 1 if retrain else 1))  # the pipeline marks train + each step
    with step("load task"):
        task = load_task(src.config.task)
    if retrain:
        model, baseline = _retrained(src, task, progress)
    else:
        with step("load stored model"):
            model, baseline = _stored(src)
    with step("export ONNX (FP32, INT8, baseline)"):
        files = _write_onnx(src, task, model, baseline, out)
    with step("C library"):
        c_lib = _c_library(model, task, out)
    raw_test = task.normalization.invert(task.x_test.numpy(), task.input_shape)
    with step("accuracy (torch, ONNX FP32, ONNX INT8)"):
        pred = _predictions(task, model, baseline, files, raw_test)
        acc = _accuracies(src, task, pred)
    with step("C library built and run (host; the board's toolchain and simulator)"):
        c_build = _c_build(task, out, raw_test, pred, load_profile(device_profile_ref(src.config, None)))
    with step("latency: prediction and ONNX Runtime measurement"):
        latency, costs, base_costs = _latencies(src, task, model, baseline, files, lut, c_build.get("board"))
    sizes = _sizes(src, files, costs, base_costs, c_lib, out)
    judged = _requirements(src, deploy, acc, latency, sizes)
    with step("report"):
        judged["diagnostics"] = _diagnostics(task, pred, judged, out)
        report = _report(src, acc, latency, sizes, judged, out, c_build)
        write_report(report, out)
    return report


def _report(
    src: ExportSource, acc: dict, latency: dict, sizes: dict, judged: dict, out: Path, c_build: dict
) -> dict[str, Any]:
    reported = acc["trial_reported_test"]
    changed = src.pipeline != src.config.pipeline or src.distill
    fp32_vs_lut = latency["fp32_vs_lut"]
    acceptance = {
        "int8_within_1pt_of_trial": None if reported is None else abs(acc["onnx_int8"] - reported) <= 0.01,
        "fp32_latency_within_15pct_of_lut": None if fp32_vs_lut is None else abs(fp32_vs_lut) <= 0.15,
    }
    board = c_build.get("board")
    if board is not None:  # a microcontroller: the cycle model against the simulator, the build's fit
        vs_sim = latency["lut_vs_simulated"]
        acceptance["prediction_within_15pct_of_simulator"] = None if vs_sim is None else abs(vs_sim) <= 0.15
        acceptance["fits_on_the_board"] = board.get("fits")
    return {
        "study": src.study.study_name,
        "trial": src.trial.number,
        "seed": src.seed,
        "candidate": src.candidate.to_dict(),
        "source": "retrained" if src.retrain else "stored model",
        "pipeline": json.loads(src.pipeline.model_dump_json()),
        "retrain_epochs": src.pipeline.train_epochs if src.retrain else None,
        "distill": src.distill,
        "accuracy": acc,
        "latency_ms": latency,
        "sizes": sizes,
        **judged,
        "reproduced_trial": None if reported is None or changed else abs(acc["torch"] - reported) <= 0.005,
        "acceptance": acceptance,
        "files": sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("report.")),
        "c_build": c_build,
    }


def write_report(report: dict[str, Any], out: Path) -> None:
    """``report.json`` and ``report.md`` (`render_export_markdown`) of an export in ``out``."""
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    (out / "report.md").write_text(render_export_markdown(report))


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


__all__ = [
    "ExportSource",
    "complete_trial",
    "export_source",
    "export_trial",
    "float_deployable",
    "study_config",
    "write_report",
]
