"""Per-trial artifacts: the stored model, the ONNX model and a JSON summary, uploaded with `optuna.artifacts`.

The stored model (``trial-NNNNN.pt``, `stored_model_record`) is the compressed model's state dict and
structure with the candidate, the uncompressed baseline it came from, the normalization and the class
labels: ``jointnas export`` builds every file from it without training. The ONNX file is written by the
one ONNX export path, `jointnas.compression.export.export_onnx` (deployable FP32 graph taking raw
samples, with `onnx_metadata`). The store is a directory (`optuna.artifacts.FileSystemArtifactStore`),
which may sit on a shared filesystem so that workers on several hosts and optuna-dashboard see the
same files. Files are stored under opaque artifact ids; Optuna's store refuses ids that would leave
its directory.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from jointnas.compression import export_onnx, model_record
from jointnas.objectives import Evaluation, TaskData
from jointnas.spaces import Candidate, UserInputError

from .attrs import STUDY_CONFIG_HASH

ONNX_MIMETYPE = "application/octet-stream"
MODEL_MIMETYPE = "application/octet-stream"


def open_artifact_store(directory: str | Path) -> FileSystemArtifactStore:
    """Create (if needed) and open the artifact directory; a one-line error if it is not writable."""
    path = Path(directory).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{time.time_ns()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserInputError(
            f"artifact directory {path} is not writable ({exc.strerror}); pass --artifact-dir DIR"
        ) from None
    return FileSystemArtifactStore(path)


def default_artifact_dir(study_name: str, storage_file: Path | None, config_path: Path | None) -> Path:
    """``<study>-artifacts`` next to the SQLite/journal file, else next to the config, else in cwd."""
    base = storage_file.parent if storage_file is not None else config_path.parent if config_path else Path.cwd()
    return (base / f"{study_name}-artifacts").resolve()


def trial_summary(trial: optuna.Trial, values: list[float]) -> dict[str, Any]:
    """The JSON summary of a finished trial: number, metric values, params and user attrs."""
    study = trial.study
    names = study.metric_names or [f"value{i}" for i in range(len(values))]
    return {
        "study": study.study_name,
        "number": trial.number,
        "values": dict(zip(names, values, strict=True)),
        "params": trial.params,
        "user_attrs": json.loads(json.dumps(trial.user_attrs, default=str)),
        "config_hash": study.user_attrs.get(STUDY_CONFIG_HASH),
    }


MODEL_FILE_FORMAT = "trial-{number:05d}.pt"
"""Name of a trial's stored model (`stored_model_record`), beside ``trial-NNNNN.onnx`` and ``.json``."""
LAYOUTS = {1: "NF", 2: "NCL", 3: "NCHW"}
"""Input layout by the number of sample axes (batch first): features, channels × length, channels × H × W."""


def onnx_metadata(study_name: str, number: int, task: TaskData) -> dict[str, str]:
    """The ``metadata_props`` of a trial's ONNX files: study, trial, class labels, input layout, normalization.

    Example:
        >>> from jointnas.objectives import TaskConfig, load_task
        >>> meta = onnx_metadata("quickstart", 3, load_task(TaskConfig()))
        >>> meta["jointnas.trial"], json.loads(meta["jointnas.input"])["layout"]
        ('3', 'NCHW')
    """
    shape = list(task.input_shape)
    layout = {"layout": LAYOUTS.get(len(shape), "N" + "x" * len(shape)), "shape": ["batch", *shape], "units": "raw"}
    norm = {**task.normalization.to_dict(), "applied": "inside the graph: (input - mean) / std"}
    return {
        "jointnas.study": study_name,
        "jointnas.trial": str(number),
        "jointnas.class_labels": json.dumps(task.class_labels),
        "jointnas.input": json.dumps(layout),
        "jointnas.normalization": json.dumps(norm),
    }


def stored_model_record(ev: Evaluation, task: TaskData, study_name: str, number: int) -> dict[str, Any]:
    """What a COMPLETE trial stores of its model (``torch.load(..., weights_only=True)`` reads it back).

    The compressed model and the trained uncompressed model it came from (the export's FP32 baseline),
    each as a `jointnas.compression.model_record`, with the task's normalization and class labels.
    """
    candidate = Candidate.from_dict(ev.attrs["candidate"])
    teacher = None if ev.teacher is None else model_record(ev.teacher, candidate)
    return model_record(
        ev.model,
        candidate,
        teacher=teacher,
        normalization=task.normalization.to_dict(),
        class_labels=task.class_labels,
        input_shape=list(task.input_shape),
        study=study_name,
        trial=number,
    )


def load_stored_model(store: Any, artifact_id: str) -> dict[str, Any]:
    """The record `stored_model_record` wrote, read back from ``store`` with ``weights_only=True``."""
    from optuna.artifacts import download_artifact

    with tempfile.TemporaryDirectory(prefix="jointnas-model-") as tmp:
        path = Path(tmp) / "model.pt"
        download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(path))
        return torch.load(path, weights_only=True)


class ArtifactUploader:
    """``on_success`` hook of `run_trials`: upload the trial's stored model, its ONNX file and its summary."""

    def __init__(self, store: FileSystemArtifactStore, objective: Any, task: TaskData) -> None:
        self.store = store
        self.objective = objective
        self.task = task

    def _upload(self, trial: optuna.Trial, path: Path, mimetype: str) -> str:
        return upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial, mimetype=mimetype)

    def __call__(self, trial: optuna.Trial, values: list[float]) -> None:
        ev = getattr(self.objective, "last_evaluation", None)
        ids: dict[str, str] = {}
        name = trial.study.study_name
        with tempfile.TemporaryDirectory(prefix="jointnas-artifacts-") as tmp:
            stem = f"trial-{trial.number:05d}"
            if ev is not None and ev.model is not None:
                try:
                    pt = Path(tmp) / MODEL_FILE_FORMAT.format(number=trial.number)
                    torch.save(stored_model_record(ev, self.task, name, trial.number), pt)
                    ids["model"] = self._upload(trial, pt, MODEL_MIMETYPE)
                    onnx = export_onnx(
                        ev.model,
                        self.task.x_train[:1],
                        Path(tmp) / f"{stem}.onnx",
                        normalization=self.task.normalization,
                        metadata=onnx_metadata(name, trial.number, self.task),
                    )
                    ids["onnx"] = self._upload(trial, onnx, ONNX_MIMETYPE)
                except Exception as exc:  # a model that cannot be stored or exported keeps its values
                    trial.set_user_attr("artifact_error", f"model: {str(exc).splitlines()[0][:200]}")
            summary = Path(tmp) / f"{stem}.json"
            summary.write_text(json.dumps(trial_summary(trial, values), indent=2))
            ids["summary"] = self._upload(trial, summary, "application/json")
        trial.set_user_attr("artifacts", ids)


__all__ = [
    "ArtifactUploader",
    "default_artifact_dir",
    "load_stored_model",
    "onnx_metadata",
    "open_artifact_store",
    "stored_model_record",
    "trial_summary",
]
