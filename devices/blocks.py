"""Blocks: the unit a latency table measures, grouped from traced layers, and their ONNX graphs.

A block is what the families build as one module: the stem (conv + ReLU), an inverted-residual block
(1x1 expand → k×k depthwise → 1x1 project, each 1x1 possibly factorized into two, plus the residual
``Add``), a dense block (linear + ReLU), the head (global average pool → flatten → classifier).
Measuring whole blocks lets ONNX Runtime fuse inside them (Conv+ReLU, Conv+Add) as it does in the
full model; what remains between blocks is fitted by the table's calibration.

A block's key names its op kind, input shape, every layer's channels, kernel, stride, ReLU and bias,
the residual and pool flags, and the bit-widths the device executes (see `BlockSpec.key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from jointnas.spaces import LayerInfo


@dataclass(frozen=True)
class OpSpec:
    """One weight layer of a block: ``kind`` is ``conv``, ``dwconv`` or ``linear``."""

    kind: str
    in_channels: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    relu: bool = False
    bias: bool = True

    @property
    def token(self) -> str:
        tag = {"conv": "c", "dwconv": "d", "linear": "l"}.get(self.kind, self.kind)
        text = f"{tag}{self.in_channels}>{self.out_channels}"
        if self.kind != "linear":
            text += f"k{self.kernel}s{self.stride}"
            if self.groups not in (1, self.in_channels):
                text += f"g{self.groups}"
        return text + ("r" if self.relu else "") + ("" if self.bias else "n")


@dataclass(frozen=True)
class BlockSpec:
    """One block as the device executes it.

    ``in_shape`` excludes the batch; ``pool`` puts a global average pool + flatten before the ops;
    ``residual`` adds the block input to its output; ``weight_bits`` / ``act_bits`` are the bit-widths
    the device executes (bit-widths it does not run natively execute as float, 32).
    """

    kind: str
    in_shape: tuple[int, ...]
    ops: tuple[OpSpec, ...]
    residual: bool = False
    pool: bool = False
    weight_bits: int = 32
    act_bits: int = 32

    @property
    def key(self) -> str:
        """Table key, e.g. ``ir|in=16x8x8|c16>32k1s1r-d32>32k5s2r-c32>24k1s1|res=0|pool=0|b=w32a32``."""
        shape = "x".join(str(d) for d in self.in_shape)
        ops = "-".join(op.token for op in self.ops)
        return (
            f"{self.kind}|in={shape}|{ops}|res={int(self.residual)}|pool={int(self.pool)}"
            f"|b=w{self.weight_bits}a{self.act_bits}"
        )


def _group_name(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return ".".join(parts[:2])
    if parts[0] in ("stem", "classifier"):
        return parts[0]
    return name


def _block_kind(group: str, layers: Sequence[LayerInfo]) -> str:
    if group == "stem":
        return "stem"
    if group == "classifier":
        return "head"
    if any(layer.kind == "dwconv" for layer in layers):
        return "ir"
    if all(layer.kind == "linear" for layer in layers):
        return "dense"
    return "block"


def group_blocks(
    layers: Sequence[LayerInfo], native_bits: Sequence[int] = (32,)
) -> list[tuple[BlockSpec, list[LayerInfo]]]:
    """Group traced layers into blocks (by module path: ``stem``, ``blocks.<i>``, ``classifier``).

    ``native_bits`` are the weight/activation bit-widths the device runs natively; others are keyed
    as float (32), which is how ONNX Runtime runs the exported fake-quantized model.
    """
    groups: list[tuple[str, list[LayerInfo]]] = []
    for layer in layers:
        g = _group_name(layer.name)
        if groups and groups[-1][0] == g:
            groups[-1][1].append(layer)
        else:
            groups.append((g, [layer]))
    native = set(native_bits)
    out: list[tuple[BlockSpec, list[LayerInfo]]] = []
    prev_out: tuple[int, ...] | None = None
    for g, members in groups:
        first = members[0]
        in_shape = first.in_shape
        pool = first.kind == "linear" and prev_out is not None and len(prev_out) > 1 and len(first.in_shape) == 1
        if pool:
            in_shape = prev_out  # type: ignore[assignment]
        ops = tuple(
            OpSpec(
                layer.kind,
                layer.in_channels,
                layer.out_channels,
                layer.kernel,
                layer.stride,
                layer.groups,
                layer.relu,
                layer.bias_numel > 0,
            )
            for layer in members
        )
        # IEEE half runs as float (its 16 storage bits are not an INT16 kernel).
        wb = first.weight_bits if first.weight_bits in native and not first.weight_fp16 else 32
        ab = first.act_bits if first.act_bits in native and not first.act_fp16 else 32
        residual = first.residual_numel > 0 and members[-1].out_shape == first.in_shape
        out.append((BlockSpec(_block_kind(g, members), tuple(in_shape), ops, residual, pool, wb, ab), members))
        prev_out = members[-1].out_shape
    return out


class _GraphBuilder:
    """Nodes and random initializers of one block graph, with fresh tensor names in creation order."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.inits: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def node(self, op_type: str, inputs: list[str], prefix: str, **attrs: Any) -> str:
        out = self.fresh(prefix)
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def weights(self, op: Any, shape: tuple[int, ...], w_name: str, b_name: str) -> list[str]:
        """The op's weight (and bias) initializers; the names its node takes after the input."""
        w = self.rng.standard_normal(shape, dtype=np.float32) * 0.1
        self.inits.append(numpy_helper.from_array(w, w_name))
        if not op.bias:
            return [w_name]
        self.inits.append(numpy_helper.from_array(self.rng.standard_normal(op.out_channels, dtype=np.float32), b_name))
        return [w_name, b_name]

    def op(self, op: Any, cur: str, rank: int) -> tuple[str, int]:
        """Emit one conv/linear op (and its ReLU) after tensor ``cur`` of ``rank``; the new tensor and rank."""
        w_name, b_name, out = self.fresh("w"), self.fresh("b"), self.fresh("z")
        if op.kind == "linear":
            if rank != 1:
                cur, rank = self.node("Flatten", [cur], "f", axis=1), 1
            names = self.weights(op, (op.out_channels, op.in_channels), w_name, b_name)
            self.nodes.append(helper.make_node("Gemm", [cur, *names], [out], transB=1))
        else:
            spatial = rank - 1
            k = [op.kernel] * spatial
            names = self.weights(op, (op.out_channels, op.in_channels // op.groups, *k), w_name, b_name)
            conv = {"kernel_shape": k, "strides": [op.stride] * spatial, "pads": [op.kernel // 2] * (2 * spatial)}
            self.nodes.append(helper.make_node("Conv", [cur, *names], [out], **conv, group=op.groups))
        return (self.node("Relu", [out], "r") if op.relu else out), rank


def block_graph(spec: BlockSpec, seed: int = 0) -> onnx.ModelProto:
    """A float ONNX graph of ``spec`` with random weights (input ``x`` of shape ``[1, *in_shape]``)."""
    g = _GraphBuilder(seed)
    cur, rank = "x", len(spec.in_shape)
    if spec.pool:
        pooled = g.node("GlobalAveragePool", [cur], "p")
        cur, rank = g.node("Flatten", [pooled], "f", axis=1), 1
    for op in spec.ops:
        cur, rank = g.op(op, cur, rank)
    if spec.residual:
        cur = g.node("Add", ["x", cur], "a")
    g.nodes.append(helper.make_node("Identity", [cur], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *spec.in_shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(g.nodes, "block", [x], [y], g.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def overhead_spec(in_shape: tuple[int, ...]) -> BlockSpec:
    """The empty block (an ``Identity`` graph): what one ONNX Runtime session run costs by itself."""
    return BlockSpec("overhead", tuple(in_shape), ())
