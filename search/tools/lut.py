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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn

from jointnas.compression import (
    channels_to_keep,
    factorize_low_rank,
    prune_channels,
    rank_for,
    saves_parameters,
)
from jointnas.compression.export import deployable_model, export_onnx
from jointnas.devices import (
    REPEATS,
    ROUNDS,
    BlockSpec,
    DeviceProfile,
    LatencyTable,
    OpSpec,
    fit_calibration,
    group_blocks,
    load_profile,
    measure_onnx_ms,
    overhead_spec,
    prediction_metrics,
)
from jointnas.objectives import load_task
from jointnas.spaces import Candidate, Stage, UserInputError, build_model, sample_candidate, trace_layers
from jointnas.spaces.families import get_family
from jointnas.spaces.params import float_grid

from ..config import StudyConfig


def random_candidates(config: StudyConfig, n: int, seed: int) -> list[Candidate]:
    """``n`` candidates of the study's space drawn uniformly at random (reproducible by ``seed``)."""
    task = load_task(config.task)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [sample_candidate(study.ask(), config.space, task.input_shape, task.num_classes) for _ in range(n)]


def timing_model(
    candidate: Candidate, steps: list[str], prune_scope: str = "hidden", rank_mode: str = "ratio"
) -> nn.Module:
    """The candidate's model as ONNX Runtime times it: pruned and factorized as the pipeline does
    (untrained weights suffice for timing), in deployment form (`compression.export.deployable_model`).
    Fake quantization is left out: ``ort`` devices execute the float graph."""
    torch.manual_seed(0)
    model = build_model(candidate)
    if "prune" in steps:
        prune_channels(model, candidate, scope=prune_scope)
    if "lowrank" in steps:
        factorize_low_rank(model, candidate, rank_mode)
    return deployable_model(model)


def export_onnx_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """The model as ONNX bytes, through the project's one export path (`compression.export.export_onnx`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, torch.zeros((1, *input_shape)), Path(tmp) / "model.onnx")
        return path.read_bytes()


# -- the space's blocks --------------------------------------------------------------------------------


def _exec_bits(bits: int, native: set[int]) -> int:
    return bits if bits in native else 32


def _conv1x1(cin: int, out: int, relu: bool, rank_ratio: float, lowrank: bool) -> list[OpSpec]:
    """A 1x1 conv as `factorize_low_rank` leaves it (two factors when that saves weights), BN folded."""
    if lowrank and rank_ratio < 1.0:
        r = rank_for(out, cin, rank_ratio)
        if saves_parameters(out, cin, r):
            return [OpSpec("conv", cin, r, 1, 1, 1, False, False), OpSpec("conv", r, out, 1, 1, 1, relu, True)]
    return [OpSpec("conv", cin, out, 1, 1, 1, relu, True)]


def _inverted_residual(
    cin: int, hidden: int, cout: int, kernel: int, stride: int, rank_ratio: float, lowrank: bool
) -> tuple[OpSpec, ...]:
    """One inverted-residual block's ops: expand 1x1, depthwise ``kernel``, project 1x1 (BN folded)."""
    return (
        *_conv1x1(cin, hidden, True, rank_ratio, lowrank),
        OpSpec("dwconv", hidden, hidden, kernel, stride, hidden, True, True),
        *_conv1x1(hidden, cout, False, rank_ratio, lowrank),
    )


def _inverted_residual_blocks(
    config: StudyConfig, input_shape: tuple[int, ...], n_classes: int, profile: DeviceProfile
) -> set[BlockSpec]:
    """Every stem, inverted-residual block and head the space of an ``inverted_residual`` family can
    produce after pruning (channel groups as `compression.pruning.channel_groups` forms them) and
    ratio-mode low-rank factorization.

    A stage's input width is any pruned width of the previous stage's output (its ratio is that
    stage's); the stem's group takes the first stage's ratio. The result may hold a few combinations no
    candidate reaches (the price of enumerating stage by stage), never too few.
    """
    space, knobs, steps = config.space, config.space.compression, config.pipeline.steps
    widths = get_family(space.family).stage_widths(space)
    prune_all = "prune" in steps and config.pipeline.prune_scope == "all"
    prune_hidden = "prune" in steps
    lowrank = "lowrank" in steps
    prunes = float_grid(knobs.prune_ratio, knobs.prune_step)
    ranks = float_grid(knobs.rank_ratio, knobs.rank_step)
    native = set(profile.native_bits)
    bits = {(_exec_bits(w, native), _exec_bits(a, native)) for w in knobs.weight_bits for a in knobs.act_bits}
    head_bits = {_exec_bits(b, native) for b in knobs.head_bits}

    def keep(n: int, p: float, applies: bool) -> int:
        return channels_to_keep(n, p) if applies else n

    specs: set[BlockSpec] = set()
    c_in, *size = input_shape  # the spatial dimensions: (H, W) of an image, (L,) of a series
    # incoming groups: (original width, ratio of the group or None when any ratio of the grid)
    incoming: set[tuple[int, None]] = set()
    for stem, p in itertools.product(space.stem_channels, prunes):
        width = keep(stem, p, prune_all)
        for hb in head_bits:
            specs.add(
                BlockSpec(
                    "stem", (c_in, *size), (OpSpec("conv", c_in, width, 3, 1, 1, True, True),), False, False, hb, hb
                )
            )
        incoming.add((stem, None))
    first_stage = True
    for i, stride in enumerate(space.strides):
        outs = widths[i]
        out_size = [(d + stride - 1) // stride for d in size]
        group_widths: set[int] = set()
        for (cin, _), out, k, e, p, r in itertools.product(
            sorted(incoming), outs, space.kernel, space.expansion, prunes, ranks
        ):
            in_ps = [p] if first_stage else prunes  # the stem's group takes the first stage's ratio
            residual = stride == 1 and cin == out
            hidden = keep(cin * e, p, prune_hidden)
            for p_in in in_ps:
                x = keep(cin, p_in, prune_all)
                y = x if residual else keep(out, p, prune_all)
                ops = _inverted_residual(x, hidden, y, k, stride, r, lowrank)
                for wb, ab in bits:
                    specs.add(BlockSpec("ir", (x, *size), ops, residual, False, wb, ab))
                group_widths.add(y)
                if space.depth[1] > 1:  # later blocks of the stage: stride 1, residual, same group
                    hid2 = keep(out * e, p, prune_hidden)
                    ops2 = _inverted_residual(y, hid2, y, k, 1, r, lowrank)
                    for wb, ab in bits:
                        specs.add(BlockSpec("ir", (y, *out_size), ops2, True, False, wb, ab))
        if i + 1 >= space.min_stages:
            for y in group_widths:
                for hb in head_bits:
                    head = (OpSpec("linear", y, n_classes, 1, 1, 1, False, True),)
                    specs.add(BlockSpec("head", (y, *out_size), head, False, True, hb, 32))  # logits stay float
        incoming = {(out, None) for out in outs}
        first_stage = False
        size = out_size
    return specs


def _dense_blocks(
    config: StudyConfig, input_shape: tuple[int, ...], n_classes: int, profile: DeviceProfile
) -> set[BlockSpec]:
    """Every dense block and head of the space of a ``dense`` family, from one-layer candidates run
    through the real pruning and low-rank code (input width: any pruned width of the previous layer)."""
    space, knobs, steps = config.space, config.space.compression, list(config.pipeline.steps)
    prunes = float_grid(knobs.prune_ratio, knobs.prune_step)
    ranks = float_grid(knobs.rank_ratio, knobs.rank_step)
    pruned = "prune" in steps  # a dense layer's width is its hidden units: pruned under either scope
    specs: set[BlockSpec] = set()
    ins = {math.prod(input_shape)}
    for widths in get_family(space.family).stage_widths(space):
        for cin, width, p, r in itertools.product(sorted(ins), widths, prunes, ranks):
            c = Candidate(space.family, (cin,), n_classes, (Stage(width, prune_ratio=p, rank_ratio=r),))
            model = timing_model(c, steps, config.pipeline.prune_scope, config.pipeline.rank_mode)
            layers = trace_layers(model, c.input_shape)
            specs.update(spec for spec, _ in group_blocks(layers, profile.native_bits))
        ins = {channels_to_keep(wd, p) if pruned else wd for wd in widths for p in prunes}
    return specs


_LAYOUT_BLOCKS = {"inverted_residual": _inverted_residual_blocks, "dense": _dense_blocks}
"""The block enumeration of each `jointnas.spaces.families.Family.layout`."""


def space_blocks(config: StudyConfig, profile: DeviceProfile) -> list[BlockSpec]:
    """Every distinct block of the study's space as ``profile`` executes it, plus the session-overhead
    entry (sorted by key)."""
    task = load_task(config.task)
    layout = get_family(config.space.family).layout
    specs = _LAYOUT_BLOCKS[layout](config, task.input_shape, task.num_classes, profile)
    overhead = overhead_spec((math.prod(task.input_shape),) if layout == "dense" else task.input_shape)
    found = {spec.key: spec for spec in specs}
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
    table: LatencyTable, candidates: list[Candidate], config: StudyConfig, rounds: int = ROUNDS
) -> tuple[list[float], list[float], list[int], list[float]]:
    """Raw block sums, calibrated predictions, block counts and end-to-end ORT medians (ms)."""
    raw, cal, nblk, models = [], [], [], []
    pipe = config.pipeline
    for c in candidates:
        model = timing_model(c, list(pipe.steps), pipe.prune_scope, pipe.rank_mode)
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
    rounds: int = ROUNDS,
    repeats: int = REPEATS,
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
    # The session-overhead entry enters every prediction (n - 1 times): time it much longer.
    overheads = [b for b in blocks if b.kind == "overhead"]
    table.measure_blocks(overheads, rounds=max(24, 2 * rounds), repeats=max(100, repeats))
    measure_s = time.perf_counter() - t1
    table.save()
    t2 = time.perf_counter()
    cands = random_candidates(config, n_calibration, seed=10_000 + seed)
    table.calibration = None
    raw, _, nblk, measured = measure_candidates(table, cands, config, rounds)
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
    rounds: int = ROUNDS,
    repeats: int = 2 * REPEATS,
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
    raw, cal, nblk, measured = measure_candidates(table, cands, config, rounds)
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
