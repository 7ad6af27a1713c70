"""Study report: Pareto plots, parallel coordinates, importances and history in one HTML file.

The figures are Optuna's own (`optuna.visualization`, plotly) wherever one serves; the same figures
are also saved into the study for optuna-dashboard (`save_plotly_graph_object`, with stable ids so a
second report overwrites the first) together with a markdown note summarizing the front.

The HTML embeds plotly.js from the installed ``plotly`` package once (about 4.7 MB), so the file
opens offline and on machines that cannot reach a CDN; ``plotlyjs="cdn"`` writes a small file that
loads plotly.js from its CDN at view time instead.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..study import front
from .diagnostics import diagnostics_markdown
from .mcu import render_build_markdown

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .steps import Steps

_UNITS = {"accuracy": "", "latency_ms": " (ms)", "flash_bytes": " (bytes)", "sram_bytes": " (bytes)"}


@dataclass
class Figure:
    """One figure of a report: a stable id (HTML id and dashboard graph id), a title, the plotly figure."""

    id: str
    title: str
    figure: go.Figure


@dataclass
class Report:
    """Figures made, figures skipped (title → reason) and the front's summary rows."""

    figures: list[Figure] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)


def metric_names(study: optuna.Study) -> list[str]:
    return list(study.metric_names or [f"value{i}" for i in range(len(study.directions))])


def _target(i: int) -> Callable[[FrozenTrial], float]:
    return lambda t: t.values[i]


def _figure_specs(study: optuna.Study) -> list[tuple[str, str, Callable[[], go.Figure]]]:
    """(id, title, builder) of every figure the study supports, in report order."""
    import optuna.visualization as vis

    names = metric_names(study)
    label = [n + _UNITS.get(n, "") for n in names]
    specs: list[tuple[str, str, Callable[[], go.Figure]]] = []
    if len(names) >= 2:
        for i, j in itertools.combinations(range(len(names)), 2):
            specs.append(
                (
                    f"pareto-{names[i]}-{names[j]}",
                    f"Pareto front: {names[i]} vs {names[j]}",
                    lambda i=i, j=j: vis.plot_pareto_front(
                        study, targets=lambda t: (t.values[i], t.values[j]), target_names=[label[i], label[j]]
                    ),
                )
            )
    if len(names) >= 3:
        specs.append(
            (
                "pareto-3d",
                f"Pareto front: {', '.join(names[:3])}",
                lambda: vis.plot_pareto_front(study, targets=lambda t: tuple(t.values[:3]), target_names=label[:3]),
            )
        )
    specs.append(("parallel-coordinates", "Objectives and compression", lambda: _parallel(study)))
    for i, name in enumerate(names):
        specs.append(
            (
                f"importance-{name}",
                f"Parameter importance for {name}",
                lambda i=i, name=name: vis.plot_param_importances(
                    study,
                    evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                    target=_target(i),
                    target_name=name,
                ),
            )
        )
    for i, name in enumerate(names):
        specs.append(
            (
                f"history-{name}",
                f"History of {name}",
                lambda i=i, name=name: vis.plot_optimization_history(study, target=_target(i), target_name=name),
            )
        )
    specs.append(("timeline", "Timeline of trials", lambda: vis.plot_timeline(study)))
    specs.append(("training-curves", "Training curves of the Pareto trials", lambda: _training_curves(study)))
    return specs


def _training_curves(study: optuna.Study) -> go.Figure:
    """Per-epoch training loss and validation accuracy (user attr ``curves``) of each Pareto trial.

    The epochs of the initial training and of every fine-tune follow each other on one axis.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    trials = [t for t in front(study) if t.user_attrs.get("curves")]
    if not trials:
        raise ValueError("no Pareto trial recorded training curves (studies run before jointnas recorded them)")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation accuracy"))
    for t in trials:
        runs = t.user_attrs["curves"]
        for col, key in ((1, "loss"), (2, "val_accuracy")):
            ys = [v for run in runs for v in run[key]]
            steps = [run["step"] for run in runs for _ in run[key]]
            fig.add_trace(
                go.Scatter(
                    x=list(range(1, len(ys) + 1)),
                    y=ys,
                    mode="lines",
                    name=f"trial {t.number}",
                    legendgroup=str(t.number),
                    showlegend=col == 1,
                    text=steps,
                    hovertemplate="epoch %{x} (%{text}): %{y:.4g}",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="epoch (training, then each fine-tune)")
    return fig


def _parallel(study: optuna.Study) -> go.Figure:
    """Parallel coordinates of every COMPLETE trial over its objectives and compression figures.

    Optuna's `plot_parallel_coordinate` draws parameters against one objective and drops trials
    lacking a conditional parameter; a joint study's story is objectives against compression, so
    the axes here are the objectives plus Flash ratio vs FP32, params and test accuracy.
    """
    import plotly.graph_objects as go

    names = metric_names(study)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    extra = [("test_accuracy", "test accuracy"), ("flash_ratio_vs_fp32", "Flash / FP32"), ("params", "params")]
    dims = [dict(label=n + _UNITS.get(n, ""), values=[t.values[i] for t in trials]) for i, n in enumerate(names)]
    for key, text in extra:
        values = [t.user_attrs.get(key) for t in trials]
        if all(isinstance(v, int | float) for v in values):
            dims.append(dict(label=text, values=values))
    line = dict(color=[t.values[0] for t in trials], colorscale="Viridis", showscale=True)
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(title="Objectives and compression (parallel coordinates)")
    return fig


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per Pareto-optimal trial: number, objective values, test accuracy, feasibility."""
    names = metric_names(study)
    rows = []
    for t in front(study) if len(study.directions) > 1 else [study.best_trial]:
        row: dict[str, Any] = {"trial": t.number}
        row.update(dict(zip(names, t.values, strict=True)))
        row["test_accuracy"] = t.user_attrs.get("test_accuracy")
        row["feasible"] = t.user_attrs.get("feasible")
        rows.append(row)
    return rows


def build_report(study: optuna.Study, progress: Steps | None = None) -> Report:
    """Make every figure the study supports; a figure Optuna cannot draw is skipped with its reason."""
    report = Report()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        report.skipped["all figures"] = "the study has no COMPLETE trial yet"
        return report
    report.rows = front_rows(study)
    specs = _figure_specs(study)
    if progress is not None:
        progress.add(len(specs))
    for fig_id, title, make in specs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-API warnings of optuna.visualization
            try:
                with progress.step(title) if progress is not None else contextlib.nullcontext():
                    fig = make()
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                report.skipped[title] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                continue
        fig.update_layout(title=title)
        report.figures.append(Figure(fig_id, title, fig))
    return report


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No COMPLETE trial.</p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _table_md(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No COMPLETE trial.\n"
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(_fmt(v) for v in r.values()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_html(
    title: str,
    sections: list[tuple[str, str]],
    figures: list[Figure],
    *,
    plotlyjs: Literal["inline", "cdn"] = "inline",
) -> str:
    """A whole HTML page: ``sections`` (heading, HTML body) then every figure, plotly.js once."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    if plotlyjs == "inline":
        script = f"<script>{get_plotlyjs()}</script>"
    else:
        script = f'<script src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"></script>'
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>",
        script,
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    for fig in figures:
        div = pio.to_html(fig.figure, full_html=False, include_plotlyjs=False, div_id=fig.id)
        parts.append(f"<h2 id='{fig.id}-title'>{html.escape(fig.title)}</h2>{div}")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report_html(
    study: optuna.Study, report: Report, path: Path, *, plotlyjs: Literal["inline", "cdn"] = "inline"
) -> None:
    names = ", ".join(metric_names(study))
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    summary = (
        f"<p>{len(study.trials)} trials, {n_complete} COMPLETE; objectives: {html.escape(names)} "
        f"({', '.join(d.name.lower() for d in study.directions)}).</p>"
    )
    sections = [("Summary", summary), ("Pareto-optimal trials", _table_html(report.rows))]
    if report.skipped:
        items = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in report.skipped.items())
        sections.append(("Figures not drawn", f"<ul>{items}</ul>"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(f"jointnas study {study.study_name}", sections, report.figures, plotlyjs=plotlyjs))


def save_to_dashboard(study: optuna.Study, report: Report) -> list[str]:
    """Save every figure as an optuna-dashboard graph object and a study note; return the graph ids."""
    from optuna_dashboard import save_note, save_plotly_graph_object

    ids = [save_plotly_graph_object(study, f.figure, graph_object_id=f"jointnas-{f.id}") for f in report.figures]
    note = [
        f"# jointnas report of {study.study_name}\n",
        "## Pareto-optimal trials\n",
        _table_md(report.rows),
        "\n## Figures (see the plots panel)\n",
        *[f"- {f.title} (`jointnas-{f.id}`)\n" for f in report.figures],
    ]
    if report.skipped:
        note.append("\n## Not drawn\n")
        note += [f"- {k}: {v}\n" for k, v in report.skipped.items()]
    save_note(study, "".join(note))
    return ids


# ----------------------------------------------------------------------------------------- export report


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render_export_markdown(report: dict[str, Any]) -> str:
    """An export's report (`jointnas.search.tools.export.export_trial`) as markdown.

    Accuracy, latency, sizes and the requirement checks, each naming the artifact and figure it judged.
    """
    acc, lat, size = report["accuracy"], report["latency_ms"], report["sizes"]
    cal = "calibrated block sum" if lat["lut_calibrated"] else "uncalibrated block sum"
    lines = [
        f"# Export of trial {report['trial']} of study `{report['study']}`",
        "",
        f"Model: {report.get('source', 'retrained')}. Seed {report['seed']}; "
        f"initial training {report['pipeline']['train_epochs']} epochs; "
        f"steps {', '.join(report['pipeline']['steps']) or 'none'}; "
        f"distillation {'on (alpha ' + str(report['pipeline']['kd_alpha']) + ')' if report['distill'] else 'off'}.",
        "",
        "## Accuracy (test split; ONNX files on raw samples)",
        "",
        "| model | accuracy |",
        "|---|---:|",
        f"| trial as reported by the search | {_pct(acc['trial_reported_test'])} |",
        f"| torch (compressed, fake-quant) | {_pct(acc['torch'])} |",
        f"| model.onnx (FP32: activation clips kept, fake-quant rounding dropped) | {_pct(acc['onnx_fp32'])} |",
        f"| model.int8.onnx (INT8) | {_pct(acc['onnx_int8'])} |",
        f"| baseline.onnx (uncompressed FP32) | {_pct(acc['baseline_onnx_fp32'])} |",
        "",
        f"## Latency ({_latency_basis(lat)}, batch 1, {lat['threads']} thread(s), fastest of interleaved passes)",
        "",
        "| | ms |",
        "|---|---:|",
        f"| latency model prediction ({lat['device']}, {cal}) | {lat['lut_predicted']:.4f} |",
        f"| sum of the table's {lat['lut_blocks']} block entries | {_ms(lat['lut_block_sum'])} |",
        f"| prediction recorded by the search | {_ms(lat['trial_reported_lut'])} |",
        *_measured_latency_rows(lat),
        "",
        "## Sizes (bytes)",
        "",
        "| | bytes |",
        "|---|---:|",
        f"| Flash estimate (packed weights, scales, biases) | {size['flash_estimate_bytes']} |",
        f"| SRAM estimate (peak live activations) | {size['sram_estimate_bytes']} |",
        f"| C library weights (packed weights, scales, biases) | {size['c_array'].get('array_bytes') or '-'} |",
        f"| C library activation arena (RAM) | {size['c_array'].get('arena_bytes') or '-'} |",
        f"| model.onnx | {size['model_onnx_bytes']} |",
        f"| model.int8.onnx | {size['model_int8_onnx_bytes']} |",
        f"| baseline.onnx | {size['baseline_onnx_bytes']} |",
    ]
    for name in size["c_array"].get("files", []):
        lines.append(f"| {name} | {size[f'{name}_bytes']} |")
    if "c_build" in report:
        lines += ["", *render_build_markdown(report["c_build"])]
    lines += _requirement_lines(report)
    if report.get("diagnostics"):
        lines += diagnostics_markdown(report["diagnostics"], "confusion.png")
    return "\n".join(lines) + "\n"


def _latency_basis(lat: dict[str, Any]) -> str:
    return "ONNX Runtime" if lat.get("fp32_vs_lut") is not None else "cycle model vs simulator; ORT for reference"


def _measured_latency_rows(lat: dict[str, Any]) -> list[str]:
    """Measured rows of the latency table: ORT on this machine against the prediction, or, for a
    microcontroller, the simulator against the cycle model (ORT timings then for reference only)."""
    if lat.get("fp32_vs_lut") is None:  # a microcontroller: this machine's ORT does not judge its prediction
        sim = lat.get("simulated_ms")
        rows = [
            f"| simulated on the board (simavr, one inference) | {_ms(sim)}"
            + ("" if sim is None else f" (prediction {100 * lat['lut_vs_simulated']:+.1f}% vs simulated)")
            + " |"
        ]
        return rows + [
            f"| this machine's ORT, model.onnx (reference, not the device) | {lat['measured_onnx_fp32']:.4f} |",
            f"| this machine's ORT, model.int8.onnx (reference) | {lat['measured_onnx_int8']:.4f} |",
        ]
    return [
        f"| measured model.onnx (FP32) | {lat['measured_onnx_fp32']:.4f} ({100 * lat['fp32_vs_lut']:+.1f}% vs "
        "prediction) |",
        f"| measured model.int8.onnx | {lat['measured_onnx_int8']:.4f} |",
        f"| measured baseline.onnx | {lat['measured_baseline_onnx_fp32']:.4f} (prediction "
        f"{lat['baseline_lut_predicted']:.4f}, {100 * lat['baseline_vs_lut']:+.1f}%) |",
    ]


def _requirement_lines(report: dict[str, Any]) -> list[str]:
    deployed, baseline = report["deployed"], report["baseline"]
    lines = ["", f"## Requirements ({deployed['artifact']} vs {baseline['artifact']})", ""]
    if not report["requirements"]:
        return [*lines, "No `[requirements]` in the study config."]
    lines += ["| requirement | required | measured | result | judged on |", "|---|---:|---:|---|---|"]
    for c in report["requirements"]:
        verdict = "PASS" if c["passed"] else "FAIL"
        lines.append(f"| {c['name']} | {c['required']:.4g} | {c['measured']:.4g} | {verdict} | {c.get('basis', '')} |")
    return lines


__all__ = [
    "render_export_markdown",
    "Figure",
    "Report",
    "build_report",
    "front_rows",
    "render_html",
    "save_to_dashboard",
    "write_report_html",
]
