"""The one ONNX export path: FP32 export of the deployable model, INT8 quantization, parity check.

`export_onnx` writes the *deployable* form of a model: BatchNorm folded, fake-quantized weights baked
in as plain float weights (so ONNX Runtime sees ordinary Conv/Gemm nodes), PACT activation quantizers
kept as Clip/Round arithmetic. Layers with ``"fp16"`` weights store float16 initializers, each widened
by one ``Cast`` to float before its Conv/Gemm (ONNX Runtime's CPU provider has no float16 Conv/Gemm
kernel; it runs the cast once per call, or folds it); ``"fp16"`` activations are a Cast pair.
`quantize_onnx_int8` turns that FP32 file into an INT8 one with ONNX Runtime: static QDQ quantization
calibrated on task data for graphs with convolutions, dynamic
quantization for MLP-only graphs. `onnx_parity` is the top-1 agreement between an ONNX file and the
torch model (or reference logits) it came from.

Exporter choice (measured on the digits CNN, torch 2.13, one thread): the TorchScript-based exporter
(``dynamo=False``) takes about 0.03 s per model, the ``torch.export``-based one (``dynamo=True``, needs
``onnxscript``) about 1 s warm and 3.6 s cold. A search exports many small models, so we use the former
and keep the opset fixed; both produce the same operators for our families.
"""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from jointnas.spaces import InputNormalization, UserInputError
from jointnas.spaces.precision import as_precision, is_float, is_fp16

from ._modules import set_submodule
from .quantization import QuantConv1d, QuantConv2d, QuantLinear, fold_batchnorm, same_geometry

OPSET = 17
"""ONNX opset of every exported model."""
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def deployable_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in deployment form: eval mode, BN folded, fake-quant weights baked in.

    Quantized layers become plain ``Conv2d``/``Linear`` whose float weights are exactly the
    de-quantized values the fake-quant forward uses, so outputs are unchanged; they keep
    ``weight_bits``/``act_bits`` and their integer codes (``packed_codes``, a `WeightCodes`) for
    the C library (`generate_c_library`). Applying it twice changes nothing.
    """
    model = fold_batchnorm(copy.deepcopy(model).eval())
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantConv1d | QuantConv2d | QuantLinear):
            set_submodule(model, name, _bake(module))
    return model.eval()


def _bake(layer: QuantConv1d | QuantConv2d | QuantLinear) -> nn.Module:
    with torch.no_grad():
        weight = layer.quantized_weight().detach().clone()
    plain = same_geometry(layer, nn.Conv1d, nn.Conv2d, nn.Linear)
    plain.weight.data.copy_(weight)
    if layer.bias is not None:
        plain.bias.data.copy_(layer.bias.detach())
    # Keep the plan's bit-widths visible to `trace_layers` (Flash) and the integer codes to the C export.
    plain.weight_bits = as_precision(getattr(layer, "weight_bits", 32))
    plain.act_bits = as_precision(getattr(layer, "act_bits", 32))
    if not is_float(plain.weight_bits):
        plain.packed_codes = layer.weight_codes()
    return plain


class RawInput(nn.Module):
    """``model`` behind the task's input standardization: it takes raw samples, ``(raw − mean) / std`` inside.

    ``mean``/``std`` are buffers shaped to broadcast over a batch of ``input_shape`` (one value, one per
    channel or one per feature), so the ONNX graph starts with one ``Sub`` and one ``Div``.
    """

    def __init__(self, model: nn.Module, normalization: InputNormalization, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        size, dims = len(normalization.mean), len(input_shape)
        if size == 1:
            shape: tuple[int, ...] = (1,) * dims
        elif size == input_shape[0] and dims > 1:
            shape = (size,) + (1,) * (dims - 1)
        else:
            shape = tuple(input_shape)
        mean = torch.tensor(normalization.mean, dtype=torch.float32).reshape(shape)
        std = torch.tensor(normalization.std, dtype=torch.float32).reshape(shape)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean) / self.std)


def export_onnx(
    model: nn.Module,
    example_input: Tensor,
    path: str | Path,
    *,
    normalization: InputNormalization | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export the deployable form of ``model`` to an FP32 ONNX file at ``path``; return the path.

    ``example_input`` is one batch (any batch size); the batch axis of the file is dynamic. Input and
    output are named ``input`` and ``logits``. With ``normalization`` the file takes raw samples and
    standardizes them itself (`RawInput`); ``metadata`` goes into the file's ``metadata_props``.
    Initializers no node uses are dropped (ONNX Runtime would warn about each one on load). Weights of
    ``"fp16"`` layers are stored as float16 initializers behind a ``Cast`` to float.

    Example:
        >>> import tempfile, torch
        >>> from jointnas.spaces import Candidate, Stage, build_model
        >>> model = build_model(Candidate("mlp", (64,), 10, (Stage(32),)))
        >>> p = export_onnx(model, torch.zeros(1, 64), Path(tempfile.mkdtemp()) / "m.onnx")
        >>> p.suffix
        '.onnx'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deploy = deployable_model(model)
    if normalization is not None and not normalization.is_identity:
        deploy = RawInput(deploy, normalization, tuple(example_input.shape[1:])).eval()
    param = next(deploy.parameters())
    example = example_input.detach().to(dtype=param.dtype, device=param.device)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo=True (see the module docstring),
        # and PACT's lazy-init branch is traced once (it is always initialized by export time).
        warnings.simplefilter("ignore")
        buffer = io.BytesIO()
        torch.onnx.export(
            deploy,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    path.write_bytes(buffer.getvalue())
    half = [f"{name}.weight" for name, m in deploy.named_modules() if is_fp16(getattr(m, "weight_bits", 32))]
    return tidy_onnx(path, metadata, float16_weights=half)


def _float16_initializers(graph, names: list[str]) -> None:
    """Store the initializers ``names`` as float16, each behind a ``Cast`` to float under its old name."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    casts = []
    for name in names:
        if name not in inits:  # the exporter folded or merged it; nothing stored under this name
            continue
        half = numpy_helper.to_array(inits[name]).astype(np.float16)
        graph.initializer.remove(inits[name])
        graph.initializer.append(numpy_helper.from_array(half, f"{name}_fp16"))
        casts.append(onnx.helper.make_node("Cast", [f"{name}_fp16"], [name], to=onnx.TensorProto.FLOAT))
    for node in reversed(casts):  # before every consumer
        graph.node.insert(0, node)


def tidy_onnx(
    path: str | Path, metadata: dict[str, str] | None = None, *, float16_weights: list[str] | None = None
) -> Path:
    """Drop initializers no node uses and set ``metadata`` (``metadata_props``) in the ONNX file at ``path``;
    ``float16_weights`` names initializers to store as float16 (behind a ``Cast`` to float)."""
    import onnx

    path = Path(path)
    proto = onnx.load(str(path))
    graph = proto.graph
    _float16_initializers(graph, float16_weights or [])
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    if metadata:
        onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **metadata})
    onnx.save(proto, str(path))
    return path


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path``."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


class _ArrayReader:
    """`onnxruntime.quantization.CalibrationDataReader` over a float array, in fixed-size batches."""

    def __init__(self, data: np.ndarray, batch_size: int = 64) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [np.ascontiguousarray(data[i : i + batch_size], dtype=np.float32) for i in range(0, len(data), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:  # pragma: no cover - ORT calls it only for some calibration methods
        raise NotImplementedError


def _has_conv(path: Path) -> bool:
    import onnx

    return any(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


def quantize_onnx_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: np.ndarray | Tensor | None = None,
    per_channel: bool = True,
    mode: Literal["auto", "static", "dynamic"] = "auto",
    reduce_range: bool = True,
) -> Path:
    """Quantize an FP32 ONNX file to INT8 with ONNX Runtime; return ``out_path``.

    Args:
        fp32_path: file written by `export_onnx`.
        out_path: where the INT8 model goes.
        calibration: inputs as the FP32 file takes them (raw samples when it standardizes itself; a few
            hundred from the training split) for static quantization. The file is pre-processed with
            ONNX Runtime's `quant_pre_process` first; its ``metadata_props`` carry over.
        per_channel: one weight scale per output channel (else per tensor).
        mode: ``"static"`` = QDQ format, signed int8 weights and activations, MinMax calibration on
            ``calibration``; ``"dynamic"`` = int8 weights, activations quantized at run time (no
            calibration; what MLPs want); ``"auto"`` = static when the graph has convolutions, else
            dynamic.
        reduce_range: weights in 7 bits (−64…63 symmetric, still stored as int8). x86 CPUs without VNNI
            run ONNX Runtime's u8·s8 kernels through 16-bit pair sums that saturate at full 8-bit range
            (digits CNN on an AVX2 EPYC: INT8 agreed with torch on 76% of the test split, 7 bits: see
            tests/compression_tests/test_stored.py); the file must run right on any x86 target, so on
            by default, as ONNX Runtime advises for non-VNNI machines.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not fp32_path.is_file():
        raise UserInputError(f"ONNX file {fp32_path} does not exist; export the model with export_onnx first")
    if mode not in ("auto", "static", "dynamic"):
        raise UserInputError(f"quantization mode {mode!r} is unknown; use 'auto', 'static' or 'dynamic'")
    if mode == "auto":
        mode = "static" if _has_conv(fp32_path) else "dynamic"
    if mode == "static" and (calibration is None or len(calibration) == 0):
        raise UserInputError("static INT8 quantization needs calibration inputs; pass a batch of training data")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jointnas-quant-") as tmp:
        # ONNX Runtime's recommended pre-processing (shape inference, graph optimization) first.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        if mode == "dynamic":
            quantize_dynamic(
                str(prepared),
                str(out_path),
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
            )
        else:
            data = calibration.detach().cpu().numpy() if isinstance(calibration, Tensor) else np.asarray(calibration)
            quantize_static(
                str(prepared),
                str(out_path),
                _ArrayReader(data),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
    return tidy_onnx(out_path, onnx_metadata(fp32_path))


def onnx_logits(path: str | Path, x: np.ndarray | Tensor, threads: int = 1) -> np.ndarray:
    """Logits of the ONNX model at ``path`` on inputs ``x`` (one ONNX Runtime call per 1024 rows)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    data = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    data = data.astype(np.float32, copy=False)
    outs = [session.run(None, {INPUT_NAME: data[i : i + 1024]})[0] for i in range(0, len(data), 1024)]
    return np.concatenate(outs)


def onnx_parity(path: str | Path, reference: nn.Module | np.ndarray | Tensor, x: np.ndarray | Tensor) -> float:
    """Top-1 agreement in [0, 1] between the ONNX model at ``path`` and ``reference`` on ``x``.

    ``reference`` is the torch model the file came from (run in deployment form) or its logits on ``x``.
    """
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float32)
    if isinstance(reference, nn.Module):
        with torch.no_grad():
            ref = deployable_model(reference)(xt).numpy()
    else:
        ref = reference.detach().cpu().numpy() if isinstance(reference, Tensor) else np.asarray(reference)
    got = onnx_logits(path, xt)
    if got.shape != ref.shape:
        raise UserInputError(f"ONNX logits shape {got.shape} differs from the reference's {ref.shape}")
    return float((got.argmax(1) == ref.argmax(1)).mean())
