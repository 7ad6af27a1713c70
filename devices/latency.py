"""Latency lookup table (LUT) of blocks, measured with ONNX Runtime, with a fitted calibration.

Each distinct block (`jointnas.devices.blocks.BlockSpec`: stem, inverted residual, dense, head) is
built as a small ONNX graph, run in ONNX Runtime with a fixed thread count and timed: warm-up runs,
then the median of repeated batched runs; the coefficient of variation is stored too. The table is a
versioned JSON file that records the device, thread count and the fingerprint of the machine it was
measured on. A prediction is the sum of a model's block entries, corrected by a per-device linear
calibration ``a·sum + b·n_blocks + c`` fitted on end-to-end measurements (`fit_calibration`): it
absorbs what a per-block sum misses (session overhead, fusion and cache effects between blocks).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from jointnas.spaces import LayerInfo, UserInputError

from .blocks import BlockSpec, block_graph, group_blocks, overhead_spec
from .memory import estimate_flash_bytes, estimate_sram_bytes
from .profile import DeviceProfile, load_profile

LUT_FORMAT_VERSION = 2


def ort_session(model: onnx.ModelProto | bytes | str, threads: int, disabled_optimizers: Sequence[str] = ()):
    """An ONNX Runtime CPU session with a fixed intra-op thread count (sequential execution), all graph
    optimizations on except ``disabled_optimizers``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    extra = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"], **extra)


SAMPLE_NS = 20_000
"""Target duration of one timing sample (ns): short enough that most samples run without being
preempted on a shared machine, long enough for the timer (the median then ignores preempted ones)."""

ROUNDS = 12
"""Fewest interleaved passes over the models when building or validating a table, and when export
measures (see `MIN_SPAN_S`)."""

MIN_SPAN_S = 3.0
"""Passes go on until they span at least this many seconds (and `ROUNDS` passes); each model keeps its
fastest pass.

Shared (virtual) machines switch between an uncontended state and a contended one (another tenant on
the same physical core) in bursts of about 0.1-0.3 s; on this project's 2-vCPU CI machine the
contended state runs the same session 1.5x slower, most of the time. A pass over a few models takes
milliseconds, so it falls in one state, and passes packed into a fraction of a second can all fall in
the contended one: table entries and end-to-end figures then mix both states (±30% errors, measured).
Spreading each model's passes over seconds makes the fastest pass the uncontended figure."""

REPEATS = 10
"""Timing samples (about 20 us each) per pass of a table build."""


def passes(rounds: int, min_span_s: float) -> Iterator[int]:
    """Pass numbers 0, 1, … for interleaved timing: at least ``rounds`` (and 1), and as many more as it
    takes to span ``min_span_s`` seconds since the first (see `MIN_SPAN_S`)."""
    began, r = time.perf_counter(), 0
    while r < max(1, rounds) or time.perf_counter() - began < min_span_s:
        yield r
        r += 1


def time_session(session, feed: dict[str, np.ndarray], warmup: int, repeats: int) -> tuple[float, float]:
    """Median latency (ms) of ``session.run`` on ``feed`` and its robust coefficient of variation.

    ``warmup`` runs are discarded first (0 for a session warmed by an earlier pass). Each of the
    ``repeats`` samples times enough back-to-back runs to last about 20 us, so timer
    resolution does not dominate microsecond-scale operators, while a sample rarely spans a preemption
    by another process; the median of the samples is robust to the ones that do.
    """
    for _ in range(max(0, warmup)):  # 0: already warm (a later pass)
        session.run(None, feed)
    t0 = time.perf_counter_ns()
    session.run(None, feed)
    single_ns = max(1, time.perf_counter_ns() - t0)
    inner = max(1, min(1000, SAMPLE_NS // single_ns))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(inner):
            session.run(None, feed)
        samples.append((time.perf_counter_ns() - t0) / 1e6 / inner)
    return statistics.median(samples), robust_cv(samples)


def robust_cv(samples: Sequence[float]) -> float:
    """Coefficient of variation from the median absolute deviation (1.4826·MAD / median), which, unlike
    stdev / mean, a few preempted samples on a shared machine do not blow up."""
    if len(samples) < 2:
        return 0.0
    med = statistics.median(samples)
    mad = statistics.median(abs(x - med) for x in samples)
    return 1.4826 * mad / med if med > 0 else 0.0


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


def measure_block_ms(
    spec: BlockSpec, threads: int, warmup: int, repeats: int, disabled_optimizers: Sequence[str] = ()
) -> tuple[float, float]:
    """Measure one block's ORT latency in milliseconds (median) and its coefficient of variation."""
    session = ort_session(block_graph(spec), threads, disabled_optimizers)
    feed = {"x": np.random.default_rng(0).standard_normal((1, *spec.in_shape), dtype=np.float32)}
    return time_session(session, feed, warmup, repeats)


@dataclass
class Entry:
    ms: float
    cv: float


@dataclass(frozen=True)
class Calibration:
    """Correction of the block sum: ``predicted = a·sum_ms + b·n_blocks + c`` (milliseconds).

    Fitted by `fit_calibration` on ``n_samples`` end-to-end measurements, minimizing relative error.
    """

    a: float = 1.0
    b: float = 0.0
    c: float = 0.0
    n_samples: int = 0

    def apply(self, sum_ms: float, n_blocks: int) -> float:
        return self.a * sum_ms + self.b * n_blocks + self.c


def fit_calibration(sums_ms: Sequence[float], n_blocks: Sequence[int], measured_ms: Sequence[float]) -> Calibration:
    """Robust least-squares fit of ``measured ≈ a·sum + b·n_blocks + c``, rows weighted by 1/measured.

    Weighting by the inverse of the measurement minimizes relative error, which is what "within ±10%"
    counts. Points whose relative residual exceeds 3 robust standard deviations (a measurement hit by
    a burst of load) are dropped and the fit repeated. With fewer than 3 distinct block counts the
    ``b`` term is dropped (it would be collinear with ``c``).

    Example:
        >>> cal = fit_calibration([1.0, 2.0, 3.0, 4.0], [3, 4, 5, 7], [1.1, 2.1, 3.1, 4.1])
        >>> round(cal.apply(5.0, 8), 6)
        5.1
    """
    s = np.asarray(sums_ms, dtype=float)
    n = np.asarray(n_blocks, dtype=float)
    y = np.asarray(measured_ms, dtype=float)
    if len(y) < 3:
        raise ValueError(f"calibration needs at least 3 measured models, got {len(y)}")
    use_b = len(np.unique(n)) >= 3
    cols = [s, n, np.ones_like(s)] if use_b else [s, np.ones_like(s)]
    x = np.stack(cols, axis=1) / y[:, None]
    keep = np.ones(len(y), dtype=bool)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(x[keep], np.ones(int(keep.sum())), rcond=None)
        rel = x @ coef - 1.0
        center = np.median(rel[keep])
        mad = np.median(np.abs(rel[keep] - center))
        new_keep = np.abs(rel - center) <= max(3 * 1.4826 * mad, 0.03)
        if new_keep.sum() < max(3, len(y) // 2) or (new_keep == keep).all():
            break
        keep = new_keep
    n_used = int(keep.sum())
    if use_b:
        return Calibration(float(coef[0]), float(coef[1]), float(coef[2]), n_used)
    return Calibration(float(coef[0]), 0.0, float(coef[1]), n_used)


class LatencyTable:
    """Block latency table for one device and thread count, optionally backed by a JSON file.

    Args:
        path: JSON file to load from and save to (``None``: in memory only).
        threads: ONNX Runtime intra-op threads used for every measurement.
        warmup: runs discarded before timing.
        repeats: timed runs; the median is stored.
        measure_missing: measure keys the table lacks on this machine (default: when the device's
            latency is ``"ort"``); otherwise a missing key is an error naming the key.
        device: the device profile (name, file or `DeviceProfile`; default ``ort-cpu``).

    Loading refuses, with a one-line message: an unreadable, truncated or corrupt file, another
    format version, a table of another device, a table measured with another thread count and,
    for a table measured on this machine, one whose fingerprint (CPU, ONNX Runtime) is another's.

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
        measure_missing: bool | None = None,
        device: str | DeviceProfile = "ort-cpu",
    ) -> None:
        self.profile = device if isinstance(device, DeviceProfile) else load_profile(device)
        self.device = self.profile.name
        self.disabled = tuple(self.profile.ort_disabled_optimizers)
        self.path = Path(path) if path is not None else None
        self.threads = threads
        self.warmup = warmup
        self.repeats = repeats
        self.measure_missing = self.profile.latency == "ort" if measure_missing is None else measure_missing
        self.entries: dict[str, Entry] = {}
        self.calibration: Calibration | None = None
        self.fingerprint: dict[str, str | int] | None = None
        self._lock = threading.Lock()
        self._dirty = False
        if self.path is not None and self.path.exists():
            self._load(self.path)

    # -- file -------------------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise UserInputError(
                f"latency table {path} is unreadable, truncated or corrupt ({exc}); delete it to re-measure "
                "or rebuild it with `jointnas lut build`"
            ) from None
        fmt = data.get("format")
        if fmt != LUT_FORMAT_VERSION:
            raise UserInputError(
                f"latency table {path} has format {fmt!r}, this jointnas reads format {LUT_FORMAT_VERSION}; "
                "rebuild it with `jointnas lut build` (or delete it to re-measure)"
            )
        try:
            entries = {str(k): Entry(float(v["ms"]), float(v["cv"])) for k, v in data["entries"].items()}
            threads = int(data["threads"])
            device = str(data["device"])
            fingerprint = dict(data["fingerprint"])
            cal = data.get("calibration")
            calibration = (
                Calibration(float(cal["a"]), float(cal["b"]), float(cal["c"]), int(cal["n_samples"])) if cal else None
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserInputError(
                f"latency table {path} is corrupt (bad or missing field: {exc}); rebuild it with `jointnas lut build`"
            ) from None
        if device != self.device:
            raise UserInputError(
                f"latency table {path} was built for device {device!r}, not {self.device!r}; "
                "use that device's table or build one for this device"
            )
        if threads != self.threads:
            raise UserInputError(
                f"latency table {path} was measured with {threads} threads, not {self.threads}; "
                "set [device] threads to match or use another table path"
            )
        self._check_fingerprint(path, fingerprint)
        self.entries.update(entries)
        self.calibration = calibration
        self.fingerprint = fingerprint

    def _check_fingerprint(self, path: Path, fingerprint: dict[str, str | int]) -> None:
        if self.profile.latency == "ort":
            here = self._fingerprint()
            keys = ("cpu", "machine", "onnxruntime", "ort_disabled_optimizers")
            differ = [k for k in keys if str(fingerprint.get(k, "")) != str(here[k])]
            if differ:
                shown = ", ".join(f"{k} {fingerprint.get(k)!r} (here {here[k]!r})" for k in differ)
                raise UserInputError(
                    f"latency table {path} was measured on another machine: {shown}; "
                    "rebuild it here with `jointnas lut build` or delete it to re-measure"
                )
        elif self.profile.machine and fingerprint.get("machine") != self.profile.machine:
            raise UserInputError(
                f"latency table {path} was measured on a {fingerprint.get('machine')!r} machine, but device "
                f"{self.device!r} is {self.profile.machine!r}; build the table on the board"
            )

    def _fingerprint(self) -> dict[str, str | int]:
        return {**device_fingerprint(), "ort_disabled_optimizers": ",".join(self.disabled)}

    def save(self, force: bool = False) -> None:
        """Write the table to ``path`` atomically, merging entries other workers saved meanwhile."""
        if self.path is None or not (self._dirty or force):
            return
        with self._lock:
            merged = dict(self.entries)
            if self.path.exists():
                try:
                    data = json.loads(self.path.read_text())
                    if data.get("format") == LUT_FORMAT_VERSION and data.get("device") == self.device:
                        for k, v in data.get("entries", {}).items():
                            merged.setdefault(k, Entry(float(v["ms"]), float(v["cv"])))
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    pass  # a corrupt file is replaced by what we measured
            payload = {
                "format": LUT_FORMAT_VERSION,
                "device": self.device,
                "threads": self.threads,
                "warmup": self.warmup,
                "repeats": self.repeats,
                "fingerprint": self.fingerprint or self._fingerprint(),
                "calibration": asdict(self.calibration) if self.calibration else None,
                "entries": {k: {"ms": e.ms, "cv": e.cv} for k, e in sorted(merged.items())},
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".lut-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, indent=1)
            os.replace(tmp, self.path)
            self.entries = merged
            self._dirty = False

    # -- prediction -------------------------------------------------------------------------------
    def blocks(self, layers: Sequence[LayerInfo]) -> list[BlockSpec]:
        """The blocks of a traced model, keyed at the bit-widths this device executes."""
        return [spec for spec, _ in group_blocks(layers, self.profile.native_bits)]

    def lookup_block(self, spec: BlockSpec) -> float:
        """Milliseconds of one block: the table entry, measured first when missing and allowed."""
        key = spec.key
        entry = self.entries.get(key)
        if entry is None:
            if not self.measure_missing:
                raise UserInputError(
                    f"latency table for device {self.device!r} has no entry {key!r}; "
                    f"measure it on the device (`jointnas lut build --device {self.device} ...`) and import the table"
                )
            ms, cv = measure_block_ms(spec, self.threads, self.warmup, self.repeats, self.disabled)
            with self._lock:
                entry = self.entries[key] = Entry(ms, cv)
                self._dirty = True
        return entry.ms

    def measure_blocks(
        self,
        specs: Sequence[BlockSpec],
        rounds: int = ROUNDS,
        progress: Callable[[int, int], None] | None = None,
        chunk: int = 256,
        repeats: int | None = None,
        min_span_s: float = MIN_SPAN_S,
    ) -> None:
        """(Re)measure ``specs`` in interleaved passes (at least ``rounds``, spanning at least
        ``min_span_s`` seconds per chunk); store each block's fastest pass.

        Blocks go in chunks: each chunk's sessions are created once, then timed pass after pass, so a
        burst of load from other processes hits one pass of many blocks instead of every pass of a few.
        Each pass is the median of its samples; load from other processes only ever slows a pass, so
        the fastest pass is the closest to a quiet machine (end-to-end measurements use the same rule;
        see `ROUNDS` for why many short passes).
        The stored CV is the median of the passes' (robust) sample CVs.
        """
        total, done = len(specs) * max(1, rounds), 0
        for start in range(0, len(specs), chunk):
            part = specs[start : start + chunk]
            sessions = [ort_session(block_graph(s), self.threads, self.disabled) for s in part]
            feeds = [{"x": np.random.default_rng(0).standard_normal((1, *s.in_shape), dtype=np.float32)} for s in part]
            runs: list[list[tuple[float, float]]] = [[] for _ in part]
            for r in passes(rounds, min_span_s):
                warmup = self.warmup if r == 0 else 0
                for i, (session, feed) in enumerate(zip(sessions, feeds, strict=True)):
                    runs[i].append(time_session(session, feed, warmup, repeats or self.repeats))
                    if r < rounds:
                        done += 1
                        if progress:
                            progress(done, total)
            with self._lock:
                for spec, xs in zip(part, runs, strict=True):
                    ms = min(m for m, _ in xs)
                    self.entries[spec.key] = Entry(ms, statistics.median(c for _, c in xs))
                self._dirty = True

    def _raw(self, specs: Sequence[BlockSpec]) -> float:
        # Every block was timed as a session of its own: count one session's fixed cost, not n. A block
        # costs what it adds to that fixed cost, never less than nothing (a block timed within noise of
        # an empty session would otherwise make a bigger model predict faster).
        entries = [self.lookup_block(spec) for spec in specs]
        if len(entries) < 2:
            return sum(entries)
        overhead = self.lookup_block(overhead_spec(specs[0].in_shape))
        return overhead + sum(max(0.0, ms - overhead) for ms in entries)

    def predict_raw_ms(self, layers: Sequence[LayerInfo]) -> float:
        """The uncalibrated prediction (ms): the fixed cost of a session run (an ``Identity`` graph,
        measured like a block) plus what each block's entry adds to it (never below 0); that is, the sum
        of the block entries less the fixed cost for all blocks but one."""
        return self._raw(self.blocks(layers))

    def memory_bytes(self, layers: Sequence[LayerInfo]) -> tuple[int, int]:
        """(Flash, SRAM) the device needs for the model: its parameters (`estimate_flash_bytes`) and its
        peak live activations (`estimate_sram_bytes`); ONNX Runtime's own footprint is not modelled."""
        return estimate_flash_bytes(layers), estimate_sram_bytes(layers)

    def predict_ms(self, layers: Sequence[LayerInfo]) -> float:
        """Predicted latency in milliseconds: the calibrated block sum (the raw sum when uncalibrated)."""
        specs = self.blocks(layers)
        raw = self._raw(specs)
        if self.calibration is None:
            return raw
        return max(self.calibration.apply(raw, len(specs)), 1e-6)


def open_latency_model(
    device: str | DeviceProfile,
    path: str | os.PathLike[str] | None,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 15,
):
    """The latency predictor of a device: a `LatencyTable` (``ort``/``imported``) or a `CycleModel`.

    An imported device needs its table file, built on the board with ``jointnas lut build``.
    """
    from .mcu import CycleModel

    profile = device if isinstance(device, DeviceProfile) else load_profile(device)
    if profile.is_mcu:
        return CycleModel(profile)
    if profile.latency == "imported" and (path is None or not Path(path).exists()):
        raise UserInputError(
            f"device {profile.name!r} predicts latency from a table built on the board: run "
            f"`jointnas lut build --device {profile.name} --config STUDY.toml --out lut-{profile.name}.json` there "
            "and set [device] lut to that file"
        )
    return LatencyTable(path, threads=threads, warmup=warmup, repeats=repeats, device=profile)


def measure_onnx_ms(
    models: Sequence[onnx.ModelProto | bytes],
    threads: int,
    warmup: int,
    repeats: int,
    rounds: int = ROUNDS,
    disabled_optimizers: Sequence[str] = (),
    min_span_s: float = MIN_SPAN_S,
) -> list[tuple[float, float]]:
    """End-to-end ORT latency (ms) of whole models and the spread across rounds (coefficient of variation).

    Models are measured in interleaved passes (model 1, 2, …, n, then again; at least ``rounds``,
    spanning at least ``min_span_s`` seconds, see `MIN_SPAN_S`), each pass the
    median of its samples, and each model's fastest pass is kept: a burst of load from other processes
    hits one pass of many models instead of all passes of one, and only ever slows a pass.
    """
    sessions = [ort_session(m, threads, disabled_optimizers) for m in models]
    feeds = []
    for s in sessions:
        inp = s.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds.append({inp.name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)})
    samples: list[list[float]] = [[] for _ in sessions]
    for r in passes(rounds, min_span_s):
        for i, (s, feed) in enumerate(zip(sessions, feeds, strict=True)):
            samples[i].append(time_session(s, feed, warmup if r == 0 else 0, repeats)[0])
    out = []
    for xs in samples:
        out.append((min(xs), statistics.pstdev(xs) / statistics.fmean(xs) if len(xs) > 1 else 0.0))
    return out
