"""Templates → files: every function here prints data decided elsewhere (calls, arena plan, formats)."""

from __future__ import annotations

import math
from importlib import resources
from string import Template

import numpy as np

from .calls import Array, Call, Kernel, c_float
from .numerics import CTYPES, ENUMS, QType

REPLY_DECLARATION = """
/* Reply to a NUL-terminated query: writes at most max_len - 1 characters and a NUL into reply,
 * returns the reply's length. */
int jointnas_reply(const char *query, char *reply, int max_len);
"""


def template(name: str) -> Template:
    return Template((resources.files("jointnas.compression.cgen") / "templates" / name).read_text())


def _values(a: Array) -> list[str]:
    if a.ctype == "uint8_t":
        return [f"0x{int(v):02x}" for v in a.values]
    if a.ctype == "float":
        return [c_float(v) for v in a.values]
    return [str(int(v)) for v in a.values]


def array_declaration(a: Array) -> str:
    return f"extern const {a.ctype} {a.symbol}[{len(a.values)}] JN_PROGMEM;"


def array_definition(a: Array) -> str:
    values = _values(a)
    per_line = 16 if a.ctype == "uint8_t" else 6
    lines = [", ".join(values[i : i + per_line]) for i in range(0, len(values), per_line)]
    return f"const {a.ctype} {a.symbol}[{len(values)}] JN_PROGMEM = {{\n    " + ",\n    ".join(lines) + "\n};"


def descriptor(call: Call) -> str:
    body = ",\n    ".join(f".{k} = {v}" for k, v in call.fields.items())
    return f"/* {call.name} */\nstatic const {call.struct} {call.symbol} JN_PROGMEM = {{\n    {body}\n}};"


def invocation(call: Call, at: dict[int, int], stage: int | None) -> str:
    args = [f"&{call.symbol}"] + [f"JN_AT({at[v]})" for v in (*call.inputs, call.output)]
    if call.kind == "conv":
        args.append("NULL" if stage is None else f"JN_AT({stage})")
    return f"    {call.function}({', '.join(args)});"


def trace(index: int, call: Call, at: dict[int, int], qtype: QType, numel: int) -> str:
    return f"    JN_TRACE({index}, JN_AT({at[call.output]}), {ENUMS[qtype.type]}, {numel});"


def kernel_source(kernel: Kernel) -> str:
    return template(kernel.template).substitute(dict(kernel.params))


def kernel_prototype(kernel: Kernel) -> str:
    return f"void {kernel.name}(const jn_conv_t *desc, const void *xp, void *yp, void *stage);"


def normalization_source(mean: np.ndarray, std: np.ndarray, plane: int) -> tuple[str, str]:
    """(constant arrays, expression of the normalized value ``v`` of input element ``i`` from ``raw``)."""
    if np.all(mean == 0) and np.all(std == 1):
        return "", "raw"
    channel_mean, channel_std = mean[::plane], std[::plane]
    if np.all(mean == mean[0]) and np.all(std == std[0]):
        return "", f"(raw - {c_float(mean[0])}) / {c_float(std[0])}"
    if np.array_equal(np.repeat(channel_mean, plane), mean) and np.array_equal(np.repeat(channel_std, plane), std):
        mean, std, index = channel_mean, channel_std, f"i / {plane}u"
    else:
        index = "i"
    arrays = [Array("jn_norm_mean", "float", mean), Array("jn_norm_std", "float", std)]
    source = "\n".join("static " + array_definition(a) for a in arrays) + "\n"
    expr = f"(raw - JN_READ_F32(&jn_norm_mean[{index}])) / JN_READ_F32(&jn_norm_std[{index}])"
    return source, expr


def input_store_source(expr: str, qtype: QType, offset: int) -> str:
    if not qtype.is_int:
        return f"    ((float *)JN_AT({offset}))[i] = {expr};"
    quantize = f"jn_quantize({expr}, {c_float(qtype.scale)}, {qtype.qmin}, {qtype.qmax})"
    return f"    jn_put_q(JN_AT({offset}), i, {ENUMS[qtype.type]}, {quantize});"


def layer_comment(call: Call, qtypes: dict[int, QType], mode: str) -> str:
    x, y = (qtypes[v] for v in (call.inputs[0], call.output))
    bits = (
        "" if call.weights is None else f", {call.weights.bits}-bit weights{' sparse' if call.weights.sparse else ''}"
    )
    return f"    /* {call.name}: {mode}, {CTYPES[x.type]} -> {CTYPES[y.type]}{bits} */"


def context_weights(decay: float, min_weight: float) -> list[float]:
    """Weights ``decay ** age`` of the context trigrams the encoder keeps (``≥ min_weight``)."""
    weights, age = [], 0
    while decay**age >= min_weight and age < 64:
        weights.append(decay**age)
        age += 1
    if not weights or math.isclose(decay, 1.0) and age == 64:
        raise ValueError(f"context decay {decay} with minimum weight {min_weight} keeps no or unbounded trigrams")
    return weights
