"""`generate_c_library`: a trained, compressed model → a dependency-free C99 inference library."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jointnas.spaces import InputNormalization, UserInputError, layer_flash_bytes, trace_layers

from ..export import deployable_model
from . import render
from .arena import ArenaPlan, Buffer, Step, plan_arena
from .calls import Call, build_calls, fit_accumulators
from .graph import Graph, calibrate, lower
from .numerics import CTYPES, ENUMS, Numerics, Options, QType, decide
from .packing import pack_layer

ENCODERS = {"trigram_crc32": "chat_trigram_crc32.c.in"}
"""Text encoders with a C template, by ``encoder["kind"]`` (`jointnas.objectives.tinychat.ENCODER`)."""


@dataclass(frozen=True)
class CLayer:
    """One kernel call of the library: its op, kernel, arithmetic and the weight bytes it stores."""

    name: str
    kernel: str
    mode: str
    in_type: str
    out_type: str
    weight_bits: int | None
    sparse: bool
    weight_bytes: int


@dataclass(frozen=True)
class CLibrary:
    """What `generate_c_library` wrote: the ``c/`` folder, its files and the library's figures.

    ``header`` is the public ``jointnas_model.h``, ``sources`` the ``.c`` files to build, ``files`` all.

    ``weight_bytes`` (program memory: packed weights, scales, biases) equals
    `jointnas.devices.estimate_flash_bytes` of the model; ``arena_bytes`` is the one activation buffer.
    ``input_type`` / ``input_scale`` say how the normalized input enters the first layer.
    """

    directory: Path
    header: Path
    sources: tuple[Path, ...]
    sketch: Path
    files: tuple[Path, ...]
    input_size: int
    num_classes: int
    arena_bytes: int
    weight_bytes: int
    input_type: str
    input_scale: float
    layers: tuple[CLayer, ...]
    has_reply: bool


def _symbol_name(name: str) -> str:
    return re.sub(r"\W", "_", name).strip("_") or "model"


def _arena(graph: Graph, calls: list[Call], qtypes: dict[int, QType]) -> ArenaPlan:
    storage = {v.id: v.storage for v in graph.values}
    sizes: dict[int, tuple[int, int]] = {}
    for v in graph.values:
        q = qtypes[v.id]
        nbytes, align = sizes.get(v.storage, (0, 1))
        sizes[v.storage] = (max(nbytes, v.numel * q.nbytes), max(align, q.nbytes))
    buffers = [Buffer(s, n, a) for s, (n, a) in sizes.items()]
    steps = [
        Step(
            tuple(storage[v] for v in c.inputs),
            storage[c.output],
            tuple(storage[v] for v in c.inplace),
            c.stage_bytes,
            qtypes[c.output].nbytes,
        )
        for c in calls
    ]
    return plan_arena(buffers, steps, graph.ops[0].output)


def _check_flash(deploy: nn.Module, input_shape: tuple[int, ...], calls: list[Call]) -> int:
    """The library's weight bytes, checked against the Flash rule (`jointnas.spaces.layer_flash_bytes`)."""
    stored = sum(c.weight_bytes for c in calls)
    rule = sum(layer_flash_bytes(layer) for layer in trace_layers(deploy, input_shape))
    if stored != rule:
        raise RuntimeError(f"the C library stores {stored} weight bytes but the Flash rule counts {rule}")
    return stored


def _model_source(
    graph: Graph, num: Numerics, calls: list[Call], plan: ArenaPlan, normalization: InputNormalization
) -> dict[str, str]:
    qtypes = {v.id: num.qtype(graph, v.id) for v in graph.values}
    at = {v.id: plan.offsets[v.storage] for v in graph.values}
    shape = graph.values[graph.ops[0].output].shape
    mean, std = normalization.per_feature(shape)
    norm_arrays, expr = render.normalization_source(mean, std, shape[1] * shape[2])
    forward = []
    for i, call in enumerate(calls):
        forward.append(render.layer_comment(call, qtypes, num.modes.get(call.name, "float")))
        forward.append(render.invocation(call, at, plan.stages.get(i)))
        forward.append(render.trace(i, call, at, qtypes[call.output], graph.values[call.output].numel))
    input_value = graph.ops[0].output
    return {
        "descriptors": "\n\n".join(render.descriptor(c) for c in calls) + "\n",
        "normalization": norm_arrays,
        "input_offset": str(at[input_value]),
        "input_type": ENUMS[qtypes[input_value].type],
        "input_store": render.input_store_source(expr, qtypes[input_value], at[input_value]),
        "forward": "\n".join(forward),
        "logits_offset": str(at[graph.output]),
        "arena_bytes": str(plan.total_bytes),
        "arena_size": str(max(1, plan.total_bytes)),
    }


def _kernels_source(calls: list[Call]) -> tuple[str, str]:
    kernels = list({c.kernel.name: c.kernel for c in calls if c.kernel is not None}.values())
    need = {kind: int(any(c.kind == kind for c in calls)) for kind in ("add", "pool", "act")}
    features = "\n".join(f"#define JN_NEED_{kind.upper()} {flag}" for kind, flag in need.items())
    source = render.template("jointnas_kernels.c").substitute(
        features=features, variants="".join(render.kernel_source(k) for k in kernels)
    )
    prototypes = "\n".join(render.kernel_prototype(k) for k in kernels)
    return render.template("jointnas_runtime.h").substitute(prototypes=prototypes), source


def _weights_sources(calls: list[Call], title: str, weight_bytes: int) -> tuple[str, str]:
    arrays = [a for c in calls for a in c.arrays]
    header = (
        f"/* {title}: packed weights, scales and biases in program memory ({weight_bytes} bytes). */\n"
        '#ifndef JOINTNAS_WEIGHTS_H\n#define JOINTNAS_WEIGHTS_H\n\n#include "jointnas_runtime.h"\n\n'
        + "\n".join(render.array_declaration(a) for a in arrays)
        + "\n\n#endif /* JOINTNAS_WEIGHTS_H */\n"
    )
    source = (
        f"/* {title}: packed weights, scales and biases ({weight_bytes} bytes; layout in docs/cgen.md). */\n"
        '#include "jointnas_weights.h"\n\n' + "\n\n".join(render.array_definition(a) for a in arrays) + "\n"
    )
    return header, source


def _chat_source(encoder: Mapping[str, Any], title: str, input_qtype: QType, input_size: int) -> str:
    kind = encoder.get("kind")
    if kind not in ENCODERS:
        raise UserInputError(f"text encoder {kind!r} has no C template; known: {sorted(ENCODERS)}")
    qb, cb = int(encoder["query_buckets"]), int(encoder["context_buckets"])
    if qb + cb != input_size or input_size * input_qtype.nbytes < 2 * qb:
        raise UserInputError(f"the encoder's {qb} + {cb} features do not match the model's {input_size} inputs")
    weights = render.context_weights(float(encoder["context_decay"]), float(encoder["min_context_weight"]))
    return render.template(ENCODERS[kind]).substitute(
        title=title,
        query_buckets=qb,
        context_buckets=cb,
        end=int(encoder["end"]),
        context_trigrams=len(weights),
        alphabet=str(encoder["alphabet"]).replace("\\", "\\\\").replace('"', '\\"'),
        context_weights=", ".join(render.c_float(w) for w in weights),
        query_salt=str(encoder["query_salt"]),
        context_salt=str(encoder["context_salt"]),
        query_order="k" if input_qtype.nbytes == 1 else "JN_QUERY_BUCKETS - 1u - k",
        reply_upper=int(encoder.get("reply_case") == "upper"),
    )


def _sketch(title: str, labels: Sequence[str], input_size: int, chat: bool) -> str:
    if chat:
        return render.template("sketch_chat.ino.in").substitute(title=title, line_bytes=64)
    text = "|".join(str(label).replace("|", "/") for label in labels)
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return render.template("sketch_classify.ino.in").substitute(title=title, labels=text, input_size=input_size)


def _write(directory: Path, files: dict[str, str]) -> list[Path]:
    paths = []
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


def _layers(graph: Graph, num: Numerics, calls: list[Call]) -> tuple[CLayer, ...]:
    out = []
    for c in calls:
        x, y = num.qtype(graph, c.inputs[0]), num.qtype(graph, c.output)
        bits = None if c.weights is None else c.weights.bits
        sparse = c.weights is not None and c.weights.sparse
        mode = num.modes.get(c.name, "float")
        out.append(CLayer(c.name, c.function, mode, CTYPES[x.type], CTYPES[y.type], bits, sparse, c.weight_bytes))
    return tuple(out)


def generate_c_library(
    model: nn.Module,
    input_shape: Sequence[int],
    out_dir: str | Path,
    *,
    normalization: InputNormalization | None = None,
    class_labels: Sequence[str] | None = None,
    name: str = "model",
    calibration: torch.Tensor | None = None,
    encoder: Mapping[str, Any] | None = None,
    options: Options | None = None,
) -> CLibrary:
    """Write the C99 inference library of ``model`` into ``out_dir`` (the export's ``c/`` folder).

    Args:
        model: the trained, compressed model (its deployment form is taken, `deployable_model`).
        input_shape: one sample's shape, e.g. ``(1, 8, 8)``.
        out_dir: folder for the library sources and ``arduino/<name>/<name>.ino``.
        normalization: the task's standardization in raw units (`TaskData.normalization`); the
            library applies it, so ``jointnas_predict`` takes raw samples. ``None``: identity.
        class_labels: one label per class (the Arduino sketch prints it); default the indices.
        name: the model's name (sketch folder and file).
        calibration: a few hundred normalized training inputs: the ranges of tensors whose integer grid
            the generator chooses (the quantized model input, low-rank intermediates). Needed whenever
            an integer layer reads a float tensor.
        encoder: the task's text encoder (`TaskData.encoder`): adds ``jointnas_reply`` and a chat sketch.
        options: numeric choices (`Options`: input bits, grid bits, calibration margin).

    Returns:
        The files and figures; ``weight_bytes`` equals the Flash estimate of the model (checked).
    """
    shape = tuple(int(d) for d in input_shape)
    plan = _plan(model, shape, calibration, options or Options())
    num_classes = plan.graph.values[plan.graph.output].numel
    labels = list(class_labels) if class_labels is not None else [str(i) for i in range(num_classes)]
    if len(labels) != num_classes:
        raise UserInputError(f"{len(labels)} class labels for {num_classes} classes; give one label per class")
    sketch_name = _symbol_name(name)
    files = _files(plan, sketch_name, labels, normalization or InputNormalization(), encoder)
    paths = _write(Path(out_dir), files)
    input_qtype = plan.qtype(plan.graph.ops[0].output)
    return CLibrary(
        directory=Path(out_dir),
        header=paths[0],
        sources=tuple(p for p in paths if p.suffix == ".c"),
        sketch=paths[-1],
        files=tuple(paths),
        input_size=math.prod(shape),
        num_classes=num_classes,
        arena_bytes=plan.arena.total_bytes,
        weight_bytes=plan.weight_bytes,
        input_type=CTYPES[input_qtype.type],
        input_scale=input_qtype.scale,
        layers=_layers(plan.graph, plan.numerics, plan.calls),
        has_reply=encoder is not None,
    )


@dataclass
class _Plan:
    """Everything decided before printing: the lowered graph, number formats, calls and arena."""

    shape: tuple[int, ...]
    graph: Graph
    numerics: Numerics
    calls: list[Call]
    arena: ArenaPlan
    weight_bytes: int

    def qtype(self, vid: int) -> QType:
        return self.numerics.qtype(self.graph, vid)


def _plan(model: nn.Module, shape: tuple[int, ...], calibration: torch.Tensor | None, options: Options) -> _Plan:
    deploy = deployable_model(model).cpu().float()
    graph = lower(deploy, shape)
    ranges = calibrate(graph, calibration) if calibration is not None else None
    num = decide(graph, ranges, options)
    weights = {op.name: pack_layer(op.name, op.module) for op in graph.ops if op.kind == "conv"}
    fit_accumulators(graph, num, weights)
    calls = build_calls(graph, num, weights)
    weight_bytes = _check_flash(deploy, shape, calls)
    arena = _arena(graph, calls, {v.id: num.qtype(graph, v.id) for v in graph.values})
    return _Plan(shape, graph, num, calls, arena, weight_bytes)


def _files(
    plan: _Plan,
    sketch_name: str,
    labels: list[str],
    normalization: InputNormalization,
    encoder: Mapping[str, Any] | None,
) -> dict[str, str]:
    """The library's files by path relative to its folder (the public header first, the sketch last)."""
    title = f"jointnas model {sketch_name}"
    input_size = math.prod(plan.shape)
    runtime_h, kernels_c = _kernels_source(plan.calls)
    weights_h, weights_c = _weights_sources(plan.calls, title, plan.weight_bytes)
    model_source = _model_source(plan.graph, plan.numerics, plan.calls, plan.arena, normalization)
    header = render.template("jointnas_model.h").substitute(
        title=title,
        layout="x".join(map(str, plan.shape)),
        input_size=input_size,
        num_classes=plan.graph.values[plan.graph.output].numel,
        arena_bytes=plan.arena.total_bytes,
        weight_bytes=plan.weight_bytes,
        reply_declaration="" if encoder is None else render.REPLY_DECLARATION,
    )
    files = {
        "jointnas_model.h": header,
        "jointnas_runtime.h": runtime_h,
        "jointnas_weights.h": weights_h,
        "jointnas_kernels.c": kernels_c,
        "jointnas_weights.c": weights_c,
        "jointnas_model.c": render.template("jointnas_model.c").substitute(title=title, **model_source),
    }
    if encoder is not None:
        input_qtype = plan.qtype(plan.graph.ops[0].output)
        files["jointnas_chat.c"] = _chat_source(encoder, title, input_qtype, input_size)
    files[f"arduino/{sketch_name}/{sketch_name}.ino"] = _sketch(title, labels, input_size, encoder is not None)
    return files
