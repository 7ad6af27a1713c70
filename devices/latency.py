"""Per-layer latency lookup table (LUT) measured with ONNX Runtime on this CPU.

Each distinct layer configuration is built as a one-operator ONNX graph (Conv/Gemm, with its ReLU
when the model applies one), run in ONNX Runtime with a fixed thread count, and timed: warm-up runs,
then the median of repeated runs. Entries are cached in a JSON file next to the study and measured on
demand when a search meets a configuration the table lacks.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from jointnas.spaces import LayerInfo, UserInputError

LUT_FORMAT_VERSION = 1


def layer_key(layer: LayerInfo) -> str:
    """Table key of a layer: op kind, input shape, output channels, kernel, stride, groups, ReLU."""
    shape = "x".join(str(d) for d in layer.in_shape)
    return (
        f"{layer.kind}|in={shape}|out={layer.out_channels}|k={layer.kernel}|s={layer.stride}"
        f"|g={layer.groups}|relu={int(layer.relu)}"
    )


def _op_graph(layer: LayerInfo, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *layer.in_shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = []
    if layer.kind == "linear":
        w = rng.standard_normal((layer.out_channels, layer.in_channels), dtype=np.float32)
        b = rng.standard_normal(layer.out_channels, dtype=np.float32)
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        src = "x"
        if len(layer.in_shape) != 1:
            nodes.append(helper.make_node("Flatten", ["x"], ["xf"], axis=1))
            src = "xf"
        nodes.append(helper.make_node("Gemm", [src, "w", "b"], ["z"], transB=1))
    else:
        spatial = len(layer.in_shape) - 1
        k = [layer.kernel] * spatial
        w = rng.standard_normal((layer.out_channels, layer.in_channels // layer.groups, *k), dtype=np.float32)
        b = rng.standard_normal(layer.out_channels, dtype=np.float32)
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        pad = layer.kernel // 2
        nodes.append(
            helper.make_node(
                "Conv",
                ["x", "w", "b"],
                ["z"],
                kernel_shape=k,
                strides=[layer.stride] * spatial,
                pads=[pad] * (2 * spatial),
                group=layer.groups,
            )
        )
    nodes.append(helper.make_node("Relu" if layer.relu else "Identity", ["z"], ["y"]))
    graph = helper.make_graph(nodes, "op", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def ort_session(model: onnx.ModelProto | bytes | str, threads: int):
    """An ONNX Runtime CPU session with a fixed intra-op thread count (sequential execution)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def time_session(session, feed: dict[str, np.ndarray], warmup: int, repeats: int) -> tuple[float, float]:
    """Median latency (ms) of ``session.run`` on ``feed`` and the coefficient of variation.

    Each of the ``repeats`` samples times enough back-to-back runs to last about 0.2 ms, so timer
    resolution and scheduling jitter do not dominate microsecond-scale operators.
    """
    for _ in range(max(1, warmup)):
        session.run(None, feed)
    t0 = time.perf_counter_ns()
    session.run(None, feed)
    single_ns = max(1, time.perf_counter_ns() - t0)
    inner = max(1, min(1000, 200_000 // single_ns))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(inner):
            session.run(None, feed)
        samples.append((time.perf_counter_ns() - t0) / 1e6 / inner)
    median = statistics.median(samples)
    cv = statistics.pstdev(samples) / statistics.fmean(samples) if len(samples) > 1 else 0.0
    return median, cv


def measure_layer_ms(layer: LayerInfo, threads: int, warmup: int, repeats: int) -> tuple[float, float]:
    """Measure one layer's ORT latency in milliseconds (median) and its coefficient of variation."""
    session = ort_session(_op_graph(layer), threads)
    feed = {"x": np.random.default_rng(0).standard_normal((1, *layer.in_shape), dtype=np.float32)}
    return time_session(session, feed, warmup, repeats)


def device_fingerprint() -> dict[str, str | int]:
    """What identifies the machine a table was measured on."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "machine": platform.machine(), "onnxruntime": ort.__version__}


@dataclass
class Entry:
    ms: float
    cv: float


class LatencyTable:
    """Per-layer latency table for one device and thread count, optionally backed by a JSON file.

    Args:
        path: JSON file to load from and save to (``None``: in memory only).
        threads: ONNX Runtime intra-op threads used for every measurement.
        warmup: runs discarded before timing.
        repeats: timed runs; the median is stored.
        measure_missing: measure keys the table lacks (``ort-cpu``); otherwise a missing key is an error.

    Example:
        >>> from jointnas.spaces import Candidate, Stage, build_model, trace_layers
        >>> layers = trace_layers(build_model(Candidate("mlp", (64,), 10, (Stage(32),))), (64,))
        >>> LatencyTable(None, repeats=5).predict_ms(layers) > 0
        True
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        threads: int = 1,
        warmup: int = 10,
        repeats: int = 15,
        measure_missing: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.threads = threads
        self.warmup = warmup
        self.repeats = repeats
        self.measure_missing = measure_missing
        self.entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._dirty = False
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            if data.get("format") != LUT_FORMAT_VERSION:
                raise ValueError(f"format {data.get('format')!r}")
            entries = {k: Entry(float(v["ms"]), float(v["cv"])) for k, v in data["entries"].items()}
            threads = int(data["threads"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserInputError(
                f"latency table {path} is unreadable or corrupt ({exc}); delete it to re-measure"
            ) from None
        if threads != self.threads:
            raise UserInputError(
                f"latency table {path} was measured with {threads} threads, not {self.threads}; "
                "set [device] threads to match or use another table path"
            )
        self.entries.update(entries)

    def lookup(self, layer: LayerInfo) -> float:
        key = layer_key(layer)
        entry = self.entries.get(key)
        if entry is None:
            if not self.measure_missing:
                raise UserInputError(f"latency table has no entry {key!r}; measure it on the device")
            ms, cv = measure_layer_ms(layer, self.threads, self.warmup, self.repeats)
            with self._lock:
                entry = self.entries[key] = Entry(ms, cv)
                self._dirty = True
        return entry.ms

    def predict_ms(self, layers: Sequence[LayerInfo]) -> float:
        """Predicted latency in milliseconds: the sum of the layers' table entries."""
        return sum(self.lookup(layer) for layer in layers)

    def save(self) -> None:
        """Write new entries to ``path`` atomically, merging what other workers saved meanwhile."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            merged = dict(self.entries)
            if self.path.exists():
                try:
                    data = json.loads(self.path.read_text())
                    for k, v in data.get("entries", {}).items():
                        merged.setdefault(k, Entry(float(v["ms"]), float(v["cv"])))
                except (OSError, ValueError, KeyError, TypeError):
                    pass  # a corrupt file is replaced by what we measured
            payload = {
                "format": LUT_FORMAT_VERSION,
                "device": "ort-cpu",
                "threads": self.threads,
                "fingerprint": device_fingerprint(),
                "entries": {k: {"ms": e.ms, "cv": e.cv} for k, e in sorted(merged.items())},
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".lut-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, indent=1)
            os.replace(tmp, self.path)
            self.entries = merged
            self._dirty = False
