"""Per-trial artifacts: the ONNX model and a JSON summary, uploaded with `optuna.artifacts`.

The model is written by the one ONNX export path, `jointnas.compression.export.export_onnx`
(deployable FP32 graph). The store is a directory (`optuna.artifacts.FileSystemArtifactStore`),
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

from jointnas.compression.export import export_onnx
from jointnas.spaces import UserInputError

from .attrs import STUDY_CONFIG_HASH

ONNX_MIMETYPE = "application/octet-stream"


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


class ArtifactUploader:
    """``on_success`` hook of `run_trials`: export the trial's model and upload it with its summary."""

    def __init__(self, store: FileSystemArtifactStore, objective: Any, input_shape: tuple[int, ...]) -> None:
        self.store = store
        self.objective = objective
        self.input_shape = tuple(input_shape)

    def __call__(self, trial: optuna.Trial, values: list[float]) -> None:
        ev = getattr(self.objective, "last_evaluation", None)
        ids: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="jointnas-artifacts-") as tmp:
            stem = f"trial-{trial.number:05d}"
            if ev is not None and ev.model is not None:
                try:
                    onnx = export_onnx(ev.model, torch.zeros(1, *self.input_shape), Path(tmp) / f"{stem}.onnx")
                    ids["onnx"] = upload_artifact(
                        artifact_store=self.store, file_path=str(onnx), study_or_trial=trial, mimetype=ONNX_MIMETYPE
                    )
                except Exception as exc:  # a model that cannot be exported keeps its values
                    trial.set_user_attr("artifact_error", f"onnx export: {str(exc).splitlines()[0][:200]}")
            summary = Path(tmp) / f"{stem}.json"
            summary.write_text(json.dumps(trial_summary(trial, values), indent=2))
            ids["summary"] = upload_artifact(
                artifact_store=self.store, file_path=str(summary), study_or_trial=trial, mimetype="application/json"
            )
        trial.set_user_attr("artifacts", ids)


__all__ = [
    "ArtifactUploader",
    "default_artifact_dir",
    "open_artifact_store",
    "trial_summary",
]
