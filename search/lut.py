"""Build and validate a device's latency table over a study's space (`jointnas lut build/validate`).

This lives in `search` because it needs both the compression transforms (to know every block shape
the space can produce after pruning and low-rank factorization, and to export random candidates) and
the devices' tables.
"""

from __future__ import annotations

import itertools
import math
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jointnas.compression import factorize_low_rank, fold_batchnorm, prune_channels
from jointnas.devices import (
    BlockSpec,
    DeviceProfile,
    LatencyTable,
    fit_calibration,
    group_blocks,
    load_profile,
    measure_onnx_ms,
    overhead_spec,
    prediction_metrics,
)
from jointnas.objectives import load_task
from jointnas.spaces import Candidate, SpaceConfig, Stage, UserInputError, build_model, sample_candidate, trace_layers

from .config import StudyConfig


class RandomSuggester:
    """Optuna's ``suggest_*`` answered uniformly at random (a stand-in trial for sampling the space)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        value = int(self.rng.integers(0, (high - low) // step + 1)) * step + low
        self.params[name] = value
        return value

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        if step is None:
            value = float(self.rng.uniform(low, high))
        else:
            value = low + int(self.rng.integers(0, math.floor((high - low) / step + 1e-9) + 1)) * step
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        value = list(choices)[int(self.rng.integers(0, len(choices)))]
        self.params[name] = value
        return value


def random_candidates(config: StudyConfig, n: int, seed: int) -> list[Candidate]:
    """``n`` candidates of the study's space drawn uniformly at random (reproducible by ``seed``)."""
    task = load_task(config.task)
    rng = np.random.default_rng(seed)
    return [sample_candidate(RandomSuggester(rng), config.space, task.input_shape, task.num_classes) for _ in range(n)]


def deployable_model(candidate: Candidate, steps: list[str]) -> nn.Module:
    """The candidate's model as ONNX Runtime runs it: pruned and factorized (untrained weights suffice
    for timing), BatchNorm folded. Fake quantization is left out: ``ort`` devices execute float."""
    torch.manual_seed(0)
    model = build_model(candidate)
    if "prune" in steps:
        prune_channels(model, candidate)
    if "lowrank" in steps:
        factorize_low_rank(model, candidate)
    return fold_batchnorm(model).eval()


def export_onnx_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """The model as ONNX bytes, through the project's one export path when it is available."""
    example = torch.zeros((1, *input_shape))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            from jointnas.compression.export import export_onnx  # the one ONNX export path
        except ImportError:  # pragma: no cover - until compression/export.py is merged
            export_onnx = None
        if export_onnx is not None:
            export_onnx(model, example, path)
        else:
            # TEMPORARY (switch to compression.export.export_onnx once merged): legacy TorchScript exporter.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model, (example,), str(path), dynamo=False, opset_version=17, input_names=["x"], output_names=["y"]
                )
        return path.read_bytes()


# -- the space's blocks --------------------------------------------------------------------------------


def _frange(bounds: tuple[float, float], step: float) -> list[float]:
    lo, hi = bounds
    n = math.floor((hi - lo) / step + 1e-9)
    return [round(lo + k * step, 6) for k in range(n + 1)]


def _round_channels(value: float) -> int:
    return max(4, int(round(value / 4.0)) * 4)


def _blocks_of(candidate: Candidate, keep: set[str], steps: list[str], profile: DeviceProfile) -> list[BlockSpec]:
    layers = trace_layers(deployable_model(candidate, steps), candidate.input_shape)
    return [spec for spec, _ in group_blocks(layers, profile.native_bits) if spec.kind in keep]


Case = tuple[Candidate, set[str]]


def _cnn_cases(space: SpaceConfig, input_shape: tuple[int, ...], n_classes: int) -> Iterator[Case]:
    """Small candidates whose ``keep`` blocks cover every stem, block and head the CNN space can produce.

    Block ``i`` of a stage sees the stage's input width (the stem's or the previous stage's choices)
    and resolution (fixed by the strides before it); later blocks of a stage keep width and resolution.
    """
    knobs = space.compression
    prunes = _frange(knobs.prune_ratio, knobs.prune_step)
    ranks = _frange(knobs.rank_ratio, knobs.rank_step)
    _, h, w = input_shape
    for stem in space.stem_channels:
        yield Candidate("cnn", input_shape, n_classes, (Stage(4),), stem), {"stem"}
    in_choices = sorted(set(space.stem_channels))
    for base, stride in zip(space.stages, space.strides, strict=True):
        outs = sorted({_round_channels(base * m) for m in space.width_mult})
        out_h, out_w = (h + stride - 1) // stride, (w + stride - 1) // stride
        for k, e, p, r in itertools.product(space.kernel, space.expansion, prunes, ranks):
            for out in outs:
                for cin in in_choices:  # first block of the stage (and the head after it)
                    yield (
                        Candidate("cnn", (cin, h, w), n_classes, (Stage(out, 1, k, e, stride, p, r),), cin),
                        {"ir", "head"},
                    )
                if space.depth[1] > 1:  # later blocks of the stage
                    yield Candidate("cnn", (out, out_h, out_w), n_classes, (Stage(out, 1, k, e, 1, p, r),), out), {"ir"}
        h, w = out_h, out_w
        in_choices = outs


def _mlp_cases(space: SpaceConfig, input_shape: tuple[int, ...], n_classes: int) -> Iterator[Case]:
    """Small candidates covering every dense block (input width after the previous layer's pruning)."""
    from jointnas.compression import channels_to_keep

    knobs = space.compression
    prunes = _frange(knobs.prune_ratio, knobs.prune_step)
    ranks = _frange(knobs.rank_ratio, knobs.rank_step)
    ins = {math.prod(input_shape)}
    for _ in range(space.depth[1]):
        for cin, width, p, r in itertools.product(sorted(ins), space.widths, prunes, ranks):
            yield Candidate("mlp", (cin,), n_classes, (Stage(width, prune_ratio=p, rank_ratio=r),)), {"dense", "head"}
        ins = {channels_to_keep(wd, p) for wd in space.widths for p in prunes}


def space_blocks(config: StudyConfig, profile: DeviceProfile) -> list[BlockSpec]:
    """Every distinct block of the study's space, as ``profile`` executes it (sorted by key)."""
    task = load_task(config.task)
    cases = (
        _mlp_cases(config.space, task.input_shape, task.num_classes)
        if config.space.family == "mlp"
        else _cnn_cases(config.space, task.input_shape, task.num_classes)
    )
    steps = list(config.pipeline.steps)
    found: dict[str, BlockSpec] = {}
    for candidate, keep in cases:
        for spec in _blocks_of(candidate, keep, steps, profile):
            found.setdefault(spec.key, spec)
    overhead = overhead_spec(task.input_shape if config.space.family == "cnn" else (math.prod(task.input_shape),))
    found[overhead.key] = overhead
    return [found[k] for k in sorted(found)]


# -- build and validate --------------------------------------------------------------------------------


def _check_machine(profile: DeviceProfile, what: str) -> None:
    if profile.is_mcu:
        raise UserInputError(
            f"device {profile.name!r} predicts latency with its cycle model (no table to {what}); "
            "use an ort or imported device"
        )
    here = platform.machine()
    if profile.machine and here != profile.machine:
        raise UserInputError(
            f"device {profile.name!r} is a {profile.machine} board but this machine is {here}: "
            f"run `jointnas lut {what}` on the board and import the table"
        )


def measure_candidates(
    table: LatencyTable, candidates: list[Candidate], steps: list[str], rounds: int = 3
) -> tuple[list[float], list[float], list[int], list[float]]:
    """Raw block sums, calibrated predictions, block counts and end-to-end ORT medians (ms)."""
    raw, cal, nblk, models = [], [], [], []
    for c in candidates:
        model = deployable_model(c, steps)
        layers = trace_layers(model, c.input_shape)
        raw.append(table.predict_raw_ms(layers))
        cal.append(table.predict_ms(layers))
        nblk.append(len(table.blocks(layers)))
        models.append(export_onnx_bytes(model, c.input_shape))
    timings = measure_onnx_ms(models, table.threads, table.warmup, table.repeats, rounds, table.disabled)
    measured = [ms for ms, _ in timings]
    return raw, cal, nblk, measured


def build_table(
    config: StudyConfig,
    device: str,
    out: Path,
    *,
    threads: int | None = None,
    n_calibration: int = 40,
    seed: int = 0,
    rounds: int = 3,
    repeats: int = 100,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Measure every block of the study's space on this machine, fit the calibration, save ``out``.

    Blocks and calibration models are timed in ``rounds`` interleaved passes of ``repeats`` samples
    each (medians). ``progress(done, total)`` is called after each block measurement. Returns a
    summary (counts, seconds, the fit).
    """
    profile = load_profile(device)
    _check_machine(profile, "build")
    t0 = time.perf_counter()
    blocks = space_blocks(config, profile)
    enum_s = time.perf_counter() - t0
    table = LatencyTable(
        out,
        threads=threads or config.device.threads,
        warmup=config.device.warmup,
        repeats=repeats,
        measure_missing=True,
        device=profile,
    )
    t1 = time.perf_counter()
    table.measure_blocks(blocks, rounds, progress)
    measure_s = time.perf_counter() - t1
    table.save()
    t2 = time.perf_counter()
    steps = list(config.pipeline.steps)
    cands = random_candidates(config, n_calibration, seed=10_000 + seed)
    table.calibration = None
    raw, _, nblk, measured = measure_candidates(table, cands, steps, rounds)
    table.calibration = fit_calibration(raw, nblk, measured)
    table.save(force=True)
    calib_s = time.perf_counter() - t2
    cvs = [table.entries[s.key].cv for s in blocks]
    return {
        "device": profile.name,
        "table": str(out),
        "threads": table.threads,
        "blocks": len(blocks),
        "median_block_cv": float(np.median(cvs)) if cvs else 0.0,
        "enumerate_s": enum_s,
        "measure_s": measure_s,
        "calibrate_s": calib_s,
        "total_s": time.perf_counter() - t0,
        "calibration": {
            "a": table.calibration.a,
            "b": table.calibration.b,
            "c": table.calibration.c,
            "n_samples": table.calibration.n_samples,
        },
        "calibration_fit": prediction_metrics(
            [table.calibration.apply(r, n) for r, n in zip(raw, nblk, strict=True)], measured
        ),
    }


def validate_table(
    config: StudyConfig,
    device: str,
    table_path: Path,
    *,
    n_archs: int = 100,
    threads: int | None = None,
    seed: int = 1,
    rounds: int = 3,
    repeats: int = 100,
) -> dict[str, Any]:
    """Compare predictions with end-to-end ORT latency of ``n_archs`` random candidates (raw and calibrated)."""
    profile = load_profile(device)
    _check_machine(profile, "validate")
    if not Path(table_path).exists():
        raise UserInputError(f"latency table {table_path} does not exist; build it with `jointnas lut build`")
    table = LatencyTable(
        table_path,
        threads=threads or config.device.threads,
        warmup=config.device.warmup,
        repeats=repeats,
        device=profile,
    )
    t0 = time.perf_counter()
    cands = random_candidates(config, n_archs, seed=seed)
    raw, cal, nblk, measured = measure_candidates(table, cands, list(config.pipeline.steps), rounds)
    table.save()
    return {
        "device": profile.name,
        "table": str(table_path),
        "threads": table.threads,
        "n_archs": n_archs,
        "calibrated_table": table.calibration is not None,
        "raw": prediction_metrics(raw, measured),
        "calibrated": prediction_metrics(cal, measured),
        "measured_ms": {"min": min(measured), "median": float(np.median(measured)), "max": max(measured)},
        "seconds": time.perf_counter() - t0,
        "samples": [
            {"measured_ms": m, "raw_ms": r, "calibrated_ms": c, "blocks": n}
            for m, r, c, n in zip(measured, raw, cal, nblk, strict=True)
        ],
    }
