"""optuna-dashboard for jointnas studies: a Pareto plot and a summary note saved into each study.

The dashboard reads everything from the storage: metric names (``study.set_metric_names``), user
attrs, the artifacts uploaded by each COMPLETE trial (served from the artifact store given to the
server), and the plotly figure and Markdown note that `save_study_notes` stores in the study.
"""

from __future__ import annotations

import errno
import socket
import warnings
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from jointnas.spaces import UserInputError

from ..attrs import STUDY_ARTIFACT_DIR, STUDY_CONFIG, STUDY_CONFIG_HASH
from ..study import front

#: graph_object_id of the Pareto plot (saving again replaces it).
PARETO_PLOT_ID = "jointnas-pareto"
#: First words of the note `save_study_notes` writes (it replaces only its own note).
NOTE_MARK = "# jointnas study"


def pareto_figure(study: optuna.Study):  # -> plotly.graph_objects.Figure | None
    """The Pareto front of up to three objectives as a plotly figure (None below 2 objectives)."""
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    if len(names) < 2:
        return None
    k = min(3, len(names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.visualization.plot_pareto_front(
            study, targets=lambda t: t.values[:k], target_names=names[:k], include_dominated_trials=True
        )


def study_note(study: optuna.Study) -> str:
    """A Markdown note: what the study is, its budget and its Pareto-optimal trials."""
    names = study.metric_names or []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    lines = [
        f"{NOTE_MARK} {study.study_name}",
        "",
        f"Config hash `{str(study.user_attrs.get(STUDY_CONFIG_HASH, '?'))[:12]}`; "
        f"{len(complete)} / {study.user_attrs.get('jointnas:n_trials', '?')} COMPLETE trials; "
        f"artifacts (ONNX model + JSON summary per trial) in `{study.user_attrs.get(STUDY_ARTIFACT_DIR, '-')}`.",
        "",
        "## Pareto front",
        "",
        "| trial | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for t in front(study) if complete else []:
        lines.append(f"| {t.number} | " + " | ".join(f"{v:.4g}" for v in t.values) + " |")
    return "\n".join(lines) + "\n"


def save_study_notes(study: optuna.Study) -> bool:
    """Save the Pareto plot and the note into ``study``; False when there is nothing to show yet."""
    import optuna_dashboard

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return False
    fig = pareto_figure(study)
    if fig is not None:
        fig.update_layout(title=f"Pareto front of {study.study_name}")
        optuna_dashboard.save_plotly_graph_object(study, fig, graph_object_id=PARETO_PLOT_ID)
    # `jointnas report` (search/report.py) saves a richer note; never overwrite it with this one.
    existing = optuna_dashboard.get_note(study)
    if not existing or existing.startswith(NOTE_MARK):
        optuna_dashboard.save_note(study, study_note(study))
    return True


def check_port_free(host: str, port: int) -> None:
    """Raise `UserInputError` when ``host:port`` cannot be bound (busy, or not an address here)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserInputError(f"port {port} on {host} is busy; pass --port with a free port") from None
            raise UserInputError(f"cannot listen on {host}:{port}: {exc.strerror}; check --host/--port") from None


def dashboard_artifact_dir(storage: optuna.storages.BaseStorage, option: str | None) -> Path | None:
    """``--artifact-dir``, else the artifact directory the first jointnas study records."""
    if option:
        return Path(option).expanduser().resolve()
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.user_attrs.get(STUDY_ARTIFACT_DIR):
            return Path(summary.user_attrs[STUDY_ARTIFACT_DIR])
    return None


def refresh_notes(storage: optuna.storages.BaseStorage) -> list[str]:
    """Save plot and note into every jointnas study of ``storage``; the names of those updated."""
    done = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if STUDY_CONFIG in summary.user_attrs:
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            if save_study_notes(study):
                done.append(summary.study_name)
    return done


def serve(storage: optuna.storages.BaseStorage, host: str, port: int, artifact_dir: Path | None) -> None:
    """Run optuna-dashboard (`optuna_dashboard.run_server`) until interrupted."""
    import optuna_dashboard

    store = FileSystemArtifactStore(artifact_dir) if artifact_dir is not None else None
    try:
        optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=store)
    except OSError as exc:  # taken between check_port_free and the bind
        if exc.errno == errno.EADDRINUSE:
            raise UserInputError(f"port {port} on {host} is busy; pass --port with a free port") from None
        raise


__all__ = [
    "PARETO_PLOT_ID",
    "check_port_free",
    "dashboard_artifact_dir",
    "pareto_figure",
    "refresh_notes",
    "save_study_notes",
    "serve",
    "study_note",
]
