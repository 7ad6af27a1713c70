"""The layer list: one kernel call per op, with its descriptor fields, program-memory arrays and variant.

Everything numeric is decided here (requantization multipliers and shifts, integer biases, clamps), so
the templates only print data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from .graph import Graph, Op
from .numerics import ACC_LIMIT, CTYPES, ENUMS, F32, FLOAT, SHORT, Numerics, QType
from .packing import PackedWeights

FLT_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Array:
    """A constant array in program memory: ``values`` printed as ``ctype`` (bytes, int32 or float32)."""

    symbol: str
    ctype: str
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return len(self.values) * (1 if self.ctype == "uint8_t" else 4)


@dataclass(frozen=True)
class Kernel:
    """A convolution variant rendered from ``template`` with ``params`` (types, weight reader)."""

    name: str
    template: str
    params: tuple[tuple[str, str], ...]


@dataclass
class Call:
    """One kernel call of ``jn_forward``: ``function(&descriptor, inputs..., output[, stage])``."""

    kind: str
    name: str
    symbol: str
    struct: str
    function: str
    fields: dict[str, str]
    inputs: tuple[int, ...]
    output: int
    arrays: list[Array] = field(default_factory=list)
    kernel: Kernel | None = None
    inplace: tuple[int, ...] = ()
    stage_bytes: int = 0
    weights: PackedWeights | None = None

    @property
    def weight_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


def c_float(v: float) -> str:
    """A C float literal of ``v`` as float32 (infinities become ±FLT_MAX)."""
    v = max(-FLT_MAX, min(FLT_MAX, float(v)))
    return f"{float(np.float32(v)):.9e}f"


def symbol(name: str) -> str:
    """C symbol of an op's descriptor (its arrays append ``_w``, ``_mask``, ``_scale``, ``_bias``)."""
    return "jnl_" + (re.sub(r"\W", "_", name) or "layer")


def fixed_point(multipliers: np.ndarray) -> tuple[np.ndarray, int]:
    """int32 multipliers and one right shift with ``m / 2^shift ≈ multipliers`` (the largest in [2^30, 2^31))."""
    top = float(np.max(multipliers, initial=0.0))
    shift = 31 if top <= 0 else min(62, max(1, 30 - math.floor(math.log2(top))))
    ints = np.clip(np.round(multipliers * 2.0**shift), -ACC_LIMIT, ACC_LIMIT).astype(np.int64)
    return ints, shift


def _geometry(m: nn.Module, x: tuple[int, int, int], y: tuple[int, int, int]) -> dict[str, int]:
    if isinstance(m, nn.Linear):
        k = s = p = (1, 1)
        p = (0, 0)
        groups = 1
    else:
        two = isinstance(m, nn.Conv2d)
        k = tuple(m.kernel_size) if two else (1, m.kernel_size[0])
        s = tuple(m.stride) if two else (1, m.stride[0])
        p = tuple(m.padding) if two else (0, m.padding[0])
        groups = m.groups
    names = ("cin", "hin", "win", "cout", "hout", "wout")
    geo = dict(zip(names, (*x, *y), strict=True))
    geo.update(kh=k[0], kw=k[1], sh=s[0], sw=s[1], ph=p[0], pw=p[1], groups=groups)
    return geo


def _bias(m: nn.Module) -> np.ndarray | None:
    return None if m.bias is None else m.bias.detach().cpu().double().numpy()


def integer_bias(weights: PackedWeights, bias: np.ndarray | None, x: QType, bshift: int = 0) -> np.ndarray:
    """Biases in accumulator units ``round(b · 2^bshift / (s_x · s_w))`` (0 where a channel's scale is 0)."""
    if bias is None:
        return np.zeros(len(weights.scales), dtype=np.int64)
    unit = x.scale * weights.scales / 2.0**bshift
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(unit > 0, np.round(bias / np.where(unit > 0, unit, 1.0)), 0.0)
    return np.clip(q, -ACC_LIMIT, ACC_LIMIT).astype(np.int64)


def accumulator_bound(weights: PackedWeights, bias: np.ndarray | None, x: QType, bshift: int = 0) -> int:
    """Largest |int32 accumulator| an integer kernel reaches: ``max|x| · Σ|w| · 2^bshift + |bias|`` per channel."""
    products = x.max_q * weights.row_l1() * 2**bshift
    return int(np.max(products + np.abs(integer_bias(weights, bias, x, bshift)), initial=0))


def bias_shift(weights: PackedWeights, bias: np.ndarray | None, x: QType, multipliers: np.ndarray) -> int:
    """Fractional bits of the accumulator, so the bias is exact to about 1e-6 of an output step.

    A bias rounded to whole accumulator units is off by up to half a unit, ``multiplier / 2`` output
    steps: with low-bit weights (large scales) that flips outputs that torch rounds the other way. The
    accumulator is scaled by ``2^bshift`` as far as int32 allows, and the bias kept at that resolution.
    """
    top = float(np.max(multipliers, initial=0.0))
    if bias is None or top <= 0:
        return 0
    k = 0
    while top / 2**k > 1e-6 and k < 24 and accumulator_bound(weights, bias, x, k + 1) <= ACC_LIMIT:
        k += 1
    return k


def _clamp_fields(op: Op, y: QType) -> dict[str, str]:
    return {
        "lo": c_float(op.epilogue.lo),
        "hi": c_float(op.epilogue.hi),
        "out_scale": c_float(y.scale if y.is_int else 1.0),
        "qmin": str(y.qmin),
        "qmax": str(y.qmax),
        "out_type": ENUMS[y.type],
    }


def _weight_reader(w: PackedWeights) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(name part, template parameters) of a layer's weight format: the reader and its constant arguments."""
    if w.half:
        reader, w_t, short = "jn_read_h", "float", "f16"
    elif w.bits == 32:
        reader, w_t, short = "jn_read_f", "float", "f32"
    else:
        reader, w_t = ("jn_read_q", "int16_t") if w.bits <= 8 else ("jn_read_q16", "int32_t")
        short = f"q{w.bits}{'s' if w.signed else 'o'}"
    short += "_sparse" if w.sparse else ""
    params = (("w_t", w_t), ("read", reader), ("bits", str(w.bits)), ("signed", str(int(w.signed))))
    return short, (*params, ("sparse", str(int(w.sparse))))


def _pointwise(geometry: dict[str, int]) -> bool:
    """1x1, stride 1, no padding, no groups: a dot product per output (pointwise convs, linear layers)."""
    ones = ("kh", "kw", "sh", "sw", "groups")
    return all(geometry[k] == 1 for k in ones) and geometry["ph"] == geometry["pw"] == 0


def _int_kernel(x: QType, w: PackedWeights, pointwise: bool) -> Kernel:
    short, reader = _weight_reader(w)
    narrow = x.nbytes == 1 and w.max_level * x.max_q <= 32767
    prod = "int16_t" if narrow else "int32_t"
    name = f"jn_conv_{SHORT[x.type]}_{short}_p{16 if narrow else 32}{'_pw' if pointwise else ''}"
    params = (("fn", name), ("in_t", CTYPES[x.type]), ("prod_t", prod), ("pointwise_only", str(int(pointwise))))
    return Kernel(name, "conv_int.c.in", (*params, *reader))


def _float_kernel(x: QType, w: PackedWeights, pointwise: bool) -> Kernel:
    short, reader = _weight_reader(w)
    name = f"jn_fconv_{SHORT[x.type]}_{short}{'_pw' if pointwise else ''}"
    params = (("fn", name), ("in_t", CTYPES[x.type]), ("pointwise_only", str(int(pointwise))))
    return Kernel(name, "conv_float.c.in", (*params, *reader))


def _weight_arrays(sym: str, w: PackedWeights) -> tuple[list[Array], dict[str, str]]:
    arrays, fields = [], {"w": f"{sym}_w", "mask": "NULL", "wbits": str(w.bits), "wsigned": str(int(w.signed))}
    if w.mask is not None:
        arrays.append(Array(f"{sym}_mask", "uint8_t", np.frombuffer(w.mask, dtype=np.uint8)))
        fields["mask"] = f"{sym}_mask"
    if w.bits == 32:
        arrays.append(Array(f"{sym}_w", "float", np.frombuffer(w.data, dtype="<f4")))
        fields["w"] = f"(const uint8_t *){sym}_w"
    else:
        arrays.append(Array(f"{sym}_w", "uint8_t", np.frombuffer(w.data, dtype=np.uint8)))
    return arrays, fields


def _channel_arrays(sym: str, scale: np.ndarray | None, bias: np.ndarray | None, ctype: str) -> list[Array]:
    arrays = []
    if scale is not None:
        arrays.append(Array(f"{sym}_scale", ctype, np.asarray(scale)))
    if bias is not None:
        arrays.append(Array(f"{sym}_bias", ctype, np.asarray(bias)))
    return arrays


def conv_call(op: Op, graph: Graph, num: Numerics, w: PackedWeights, sym: str) -> Call:
    """The call of one conv/linear op in the mode `Numerics` chose for it."""
    x, y = num.qtype(graph, op.inputs[0]), num.qtype(graph, op.output)
    arrays, fields = _weight_arrays(sym, w)
    geometry = _geometry(op.module, graph.values[op.inputs[0]].shape, graph.values[op.output].shape)
    fields.update(geometry)
    fields.update(_clamp_fields(op, y))
    fields.update(in_scale=c_float(1.0), shift="0", bshift="0")
    bias = _bias(op.module)
    if num.modes[op.name] == "int":
        kernel = _int_kernel(x, w, _pointwise(geometry))
        if y.is_int:
            multipliers = x.scale * w.scales / y.scale
            k = bias_shift(w, bias, x, multipliers)
            mult, shift = fixed_point(multipliers / 2.0**k)
            arrays += _channel_arrays(sym, mult, None if bias is None else integer_bias(w, bias, x, k), "int32_t")
            fields.update(shift=str(shift), bshift=str(k), lo=c_float(-math.inf), hi=c_float(math.inf))
        else:
            arrays += _channel_arrays(sym, (x.scale * w.scales).astype(np.float32), bias, "float")
    else:
        kernel = _float_kernel(x, w, _pointwise(geometry))
        x_unit = x.scale if x.is_int else 1.0
        scale = None if w.scales is None else (x_unit * w.scales).astype(np.float32)
        arrays += _channel_arrays(sym, scale, None if bias is None else bias.astype(np.float32), "float")
        fields["in_scale"] = c_float(x_unit)
    for name in ("scale", "bias"):
        fields[name] = next((a.symbol for a in arrays if a.symbol == f"{sym}_{name}"), "NULL")
    dw = fields["groups"] == fields["cin"] == fields["cout"] and int(fields["groups"]) > 1
    plane_in, plane_out = int(fields["hin"]) * int(fields["win"]), int(fields["hout"]) * int(fields["wout"])
    in_place = dw and plane_out * y.nbytes <= plane_in * x.nbytes
    return Call(
        "conv", op.name, sym, "jn_conv_t", kernel.name, fields, op.inputs, op.output, arrays, kernel,
        inplace=op.inputs if in_place else (), stage_bytes=plane_out * y.nbytes if in_place else 0, weights=w,
    )  # fmt: skip


def _elementwise_inplace(graph: Graph, num: Numerics, op: Op) -> tuple[int, ...]:
    y = num.qtype(graph, op.output)
    return tuple(v for v in op.inputs if num.qtype(graph, v).nbytes >= y.nbytes)


def add_call(op: Op, graph: Graph, num: Numerics, sym: str) -> Call:
    a, b = (num.qtype(graph, v) for v in op.inputs)
    y = num.qtype(graph, op.output)
    fields = _clamp_fields(op, y)
    fields.update(n=str(graph.values[op.output].numel), ta=ENUMS[a.type], tb=ENUMS[b.type], ty=ENUMS[y.type])
    fields.pop("out_type")
    sa, sb = (q.scale if q.is_int else 1.0 for q in (a, b))
    fields.update(sa=c_float(sa), sb=c_float(sb), ma="0", mb="0", shift="1")
    if num.modes[op.name] == "int" and y.is_int:
        (ma, mb), shift = fixed_point(np.array([sa / y.scale, sb / y.scale]))
        fields.update(ma=str(ma), mb=str(mb), shift=str(shift))
    return Call("add", op.name, sym, "jn_add_t", "jn_add", fields, op.inputs, op.output,
                inplace=_elementwise_inplace(graph, num, op))  # fmt: skip


def pool_call(op: Op, graph: Graph, num: Numerics, sym: str) -> Call:
    x, y = num.qtype(graph, op.inputs[0]), num.qtype(graph, op.output)
    c, h, w = graph.values[op.inputs[0]].shape
    fields = _clamp_fields(op, y)
    fields.pop("out_type")
    sx = x.scale if x.is_int else 1.0
    fields.update(channels=str(c), plane=str(h * w), tx=ENUMS[x.type], ty=ENUMS[y.type])
    fields.update(sx=c_float(sx / (h * w)), mult="0", shift="1")
    if num.modes[op.name] == "int" and y.is_int:
        (mult,), shift = fixed_point(np.array([sx / (h * w * y.scale)]))
        fields.update(mult=str(mult), shift=str(shift))
    return Call("pool", op.name, sym, "jn_pool_t", "jn_pool", fields, op.inputs, op.output)


def act_call(op: Op, graph: Graph, num: Numerics, sym: str) -> Call:
    x, y = num.qtype(graph, op.inputs[0]), num.qtype(graph, op.output)
    fields = _clamp_fields(op, y)
    fields.pop("out_type")
    fields.update(n=str(graph.values[op.output].numel), tx=ENUMS[x.type], ty=ENUMS[y.type])
    fields["sx"] = c_float(x.scale if x.is_int else 1.0)
    return Call("act", op.name, sym, "jn_act_t", "jn_act", fields, op.inputs, op.output,
                inplace=_elementwise_inplace(graph, num, op))  # fmt: skip


def fit_accumulators(graph: Graph, num: Numerics, weights: dict[str, PackedWeights]) -> None:
    """Make every integer layer's int32 accumulator provably safe (see `accumulator_bound`).

    A grid input loses bits until the bound holds; a layer whose PACT input cannot runs as a float kernel.
    """
    for op in graph.ops:
        if num.modes.get(op.name) != "int" or op.kind != "conv":
            continue
        root = graph.values[op.inputs[0]].storage
        bias = _bias(op.module)
        while accumulator_bound(weights[op.name], bias, num.qtype(graph, op.inputs[0])) > ACC_LIMIT:
            grid = num.grids.get(root)
            if grid is None or grid.bits <= 2:
                num.modes[op.name] = "float"
                break
            grid.bits -= 1


def build_calls(graph: Graph, num: Numerics, weights: dict[str, PackedWeights]) -> list[Call]:
    """The calls of ``jn_forward`` in order (the input op is ``jn_input_store``, not a call)."""
    calls: list[Call] = []
    used: set[str] = set()
    for op in graph.ops:
        sym = symbol(op.name)
        sym = sym if sym not in used else f"{sym}_{len(calls)}"
        used.add(sym)
        if op.kind == "conv":
            calls.append(conv_call(op, graph, num, weights[op.name], sym))
        elif op.kind in _ELEMENTWISE:
            calls.append(_ELEMENTWISE[op.kind](op, graph, num, sym))
    return calls


_ELEMENTWISE = {"add": add_call, "pool": pool_call, "act": act_call}


__all__ = ["Array", "Call", "FLOAT", "F32", "Kernel", "build_calls", "fit_accumulators"]
