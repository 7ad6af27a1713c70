"""Number formats of the generated library: which tensors are integer, at which scale, which ops run integer.

Rules (docs/cgen.md has the reasoning and the measurements):

* A PACT-quantized tensor is stored as its codes: unsigned PACT of ≤ 8 bits as ``uint8`` (``0 … 2^b − 1``),
  signed as ``int8`` (``±(2^(b−1) − 1)``), 9-16 bits in 16-bit containers; real value = ``scale · q``
  with ``scale = α / levels``. No zero points: real 0 is code 0, so zero padding is code 0.
* A conv/linear layer runs as an **integer kernel** when its weights are integer codes and either its
  output is PACT-quantized or its input is already integer; else as a float kernel.
* An integer layer whose input is float (the model input, or a float stage before it) reads a
  quantized copy: the model input is quantized inside ``jn_input_store``, other tensors by an inserted
  ``act`` op. Such *grid* tensors, integer-layer outputs without a PACT (the first factor of a low-rank
  pair), residual sums and pooled sums are symmetric integers (unsigned when never negative) with a scale
  from a calibrated (or, for sums, exact) range; 16 bits unless a consumer's int32 accumulator bound
  forces fewer.
* An integer layer accumulates ``Σ w·x`` in int32 (the generator proves ``max|x| · Σ|w| + |bias| < 2^31``
  per output channel, or runs the layer as a float kernel) and requantizes with a per-channel int32
  multiplier and a per-layer shift: ``q = round((acc + bias) · m / 2^shift)``, clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from jointnas.spaces import C_GRID_BITS, C_INPUT_BITS, UserInputError
from jointnas.spaces.precision import as_precision, is_float

from .graph import Epilogue, Graph, Op, Pact, Value

F32, I8, U8, I16, U16 = range(5)
CTYPES = {F32: "float", I8: "int8_t", U8: "uint8_t", I16: "int16_t", U16: "uint16_t"}
ENUMS = {F32: "JN_F32", I8: "JN_I8", U8: "JN_U8", I16: "JN_I16", U16: "JN_U16"}
SHORT = {F32: "f32", I8: "i8", U8: "u8", I16: "i16", U16: "u16"}
ACC_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class QType:
    """How a tensor is stored: element ``type`` and, for integers, ``real = scale · q``, ``qmin ≤ q ≤ qmax``."""

    type: int
    scale: float = 1.0
    qmin: int = 0
    qmax: int = 0

    @property
    def is_int(self) -> bool:
        return self.type != F32

    @property
    def nbytes(self) -> int:
        return {F32: 4, I8: 1, U8: 1, I16: 2, U16: 2}[self.type]

    @property
    def max_q(self) -> int:
        return max(abs(self.qmin), abs(self.qmax))

    @property
    def amax(self) -> float:
        """Largest |real value| representable (inf for float)."""
        return math.inf if not self.is_int else self.scale * self.max_q


FLOAT = QType(F32)


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def clamp_codes(qtype: QType, epilogue: Epilogue) -> QType:
    """``qtype`` with the epilogue's real-domain clamp applied to its code range."""
    qmin, qmax = qtype.qmin, qtype.qmax
    if math.isfinite(epilogue.lo):
        qmin = max(qmin, _round(epilogue.lo / qtype.scale))
    if math.isfinite(epilogue.hi):
        qmax = min(qmax, _round(epilogue.hi / qtype.scale))
    return replace(qtype, qmin=qmin, qmax=max(qmin, qmax))


def pact_qtype(pact: Pact, epilogue: Epilogue) -> QType:
    """The codes of a PACT quantizer (after the epilogue's clamp)."""
    wide = pact.bits > 8
    kind = (I16 if wide else I8) if pact.signed else (U16 if wide else U8)
    return clamp_codes(QType(kind, pact.scale, -pact.levels if pact.signed else 0, pact.levels), epilogue)


@dataclass
class Grid:
    """A tensor whose integer grid the generator chooses: range ``amax`` (real units) and ``bits``."""

    amax: float
    nonneg: bool
    bits: int
    epilogue: Epilogue = Epilogue()

    def qtype(self) -> QType:
        amax = self.amax if self.amax > 0 and math.isfinite(self.amax) else 1.0
        if self.nonneg:
            levels = 2**self.bits - 1
            return clamp_codes(QType(U8 if self.bits <= 8 else U16, amax / levels, 0, levels), self.epilogue)
        levels = 2 ** (self.bits - 1) - 1
        return clamp_codes(QType(I8 if self.bits <= 8 else I16, amax / levels, -levels, levels), self.epilogue)


@dataclass(frozen=True)
class Options:
    """Numeric choices: bits of the quantized model input and of other grid tensors, calibration margin."""

    input_bits: int = C_INPUT_BITS
    grid_bits: int = C_GRID_BITS
    margin: float = 1.25


@dataclass
class Numerics:
    """Per value: a fixed `QType` or a `Grid`; per op name: ``"int"`` or ``"float"``."""

    fixed: dict[int, QType]
    grids: dict[int, Grid]
    modes: dict[str, str]

    def qtype(self, graph: Graph, vid: int) -> QType:
        root = _root(graph, vid)
        return self.fixed[root] if root in self.fixed else self.grids[root].qtype()


def _root(graph: Graph, vid: int) -> int:
    """The value that owns ``vid``'s storage (views share its number format)."""
    return graph.values[vid].storage


def has_codes(op: Op) -> bool:
    return op.kind == "conv" and not is_float(as_precision(getattr(op.module, "weight_bits", 32)))


def _int_friendly(graph: Graph, op: Op) -> bool:
    """Whether ``op`` would read an integer input in integer arithmetic (assuming adds stay integer)."""
    return has_codes(op) or op.kind in ("add", "pool") or (op.kind == "act" and op.epilogue.pact is not None)


class _Decider:
    """Walks the ops once, fixing each value's format and each op's mode (`decide`)."""

    def __init__(self, graph: Graph, ranges: dict[str, tuple[float, float]] | None, options: Options) -> None:
        self.graph = graph
        self.ranges = ranges
        self.options = options
        self.num = Numerics({}, {}, {})
        self.copies: dict[int, int] = {}
        self.ops: list[Op] = []

    def calibrated(self, value: Value, bits: int, allow_nonneg: bool) -> Grid:
        if self.ranges is None:
            raise UserInputError(
                f"integer layers read the float tensor {value.fx_name!r}, whose range needs calibration; "
                "pass calibration= a few hundred normalized training inputs"
            )
        lo, hi = self.ranges.get(value.fx_name, (-1.0, 1.0))
        return Grid(max(abs(lo), abs(hi)) * self.options.margin, allow_nonneg and lo >= 0.0, bits)

    def is_int(self, vid: int) -> bool:
        root = _root(self.graph, vid)
        return root in self.num.grids or self.num.fixed[root].is_int

    def int_input(self, vid: int) -> int:
        """``vid`` itself when integer, else an integer copy (the model input is quantized in place)."""
        if self.is_int(vid):
            return vid
        root = _root(self.graph, vid)
        if self.graph.ops[0].output == root:  # the model input: jn_input_store quantizes it
            del self.num.fixed[root]
            self.num.grids[root] = self.calibrated(self.graph.values[root], self.options.input_bits, True)
            return vid
        if root not in self.copies:
            src = self.graph.values[vid]
            copy = Value(len(self.graph.values), src.shape, len(self.graph.values), src.fx_name)
            self.graph.values.append(copy)
            op = Op("act", f"{src.fx_name}_quantized", (vid,), copy.id)
            self.ops.append(op)
            self.num.modes[op.name] = "float"
            self.num.grids[copy.id] = self.calibrated(src, self.options.grid_bits, True)
            self.copies[root] = copy.id
        return self.copies[root]

    def feeds_integer(self, vid: int) -> bool:
        """Whether every reader of ``vid`` would compute on an integer input (so it can be integer)."""
        consumers = self.graph.consumers(vid)
        last = vid == _root(self.graph, self.graph.output) or not consumers
        return not last and all(_int_friendly(self.graph, c) for c in consumers)

    def mode(self, op: Op) -> str:
        if op.kind == "conv":
            quantized = op.epilogue.pact is not None or self.feeds_integer(op.output)
            if has_codes(op) and (quantized or self.is_int(op.inputs[0])):
                op.inputs = (self.int_input(op.inputs[0]),)
                return "int"
            return "float"
        if op.kind in ("add", "pool") and all(self.is_int(v) for v in op.inputs):
            return "int"
        return "float"

    def output_format(self, op: Op, mode: str) -> None:
        out = op.output
        if op.epilogue.pact is not None:
            self.num.fixed[out] = pact_qtype(op.epilogue.pact, op.epilogue)
            return
        if mode != "int" or not self.feeds_integer(out):
            self.num.fixed[out] = FLOAT
        else:
            self.num.grids[out] = self.analytic_grid(op) or self.calibrated(self.graph.values[out], 16, False)
            self.num.grids[out].bits = self.options.grid_bits
            self.num.grids[out].epilogue = op.epilogue
            self.num.grids[out].nonneg |= op.epilogue.lo >= 0.0

    def analytic_grid(self, op: Op) -> Grid | None:
        """Exact ranges of sums (add: both ranges; pool: the input's); None for conv outputs."""
        if op.kind not in ("add", "pool"):
            return None
        inputs = [self.num.qtype(self.graph, v) for v in op.inputs]
        amax = sum(q.amax for q in inputs) if op.kind == "add" else inputs[0].amax
        if math.isfinite(op.epilogue.hi) and math.isfinite(op.epilogue.lo):
            amax = min(amax, max(abs(op.epilogue.lo), abs(op.epilogue.hi)))
        return Grid(amax, all(q.qmin >= 0 for q in inputs), self.options.grid_bits)

    def run(self) -> tuple[list[Op], Numerics]:
        for op in self.graph.ops:
            if op.kind == "input":
                self.num.fixed[op.output] = FLOAT
                self.ops.append(op)
                continue
            mode = self.mode(op)
            self.num.modes[op.name] = mode
            self.ops.append(op)
            self.output_format(op, mode)
        self.graph.ops = self.ops
        return self.ops, self.num


def decide(graph: Graph, ranges: dict[str, tuple[float, float]] | None, options: Options) -> Numerics:
    """The number formats of ``graph``'s values and the modes of its ops; inserts quantize ops into ``graph``.

    ``ranges`` are calibrated ``(min, max)`` per fx node (`graph.calibrate`); ``None`` when there was no
    calibration data (an error only if a tensor needs a calibrated grid).
    """
    return _Decider(graph, ranges, options).run()[1]
