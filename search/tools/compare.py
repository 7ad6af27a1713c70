"""The comparison report of `jointnas compare`: JSON, HTML (plotly) and PNG (matplotlib).

PNGs are drawn with matplotlib (Agg backend) rather than plotly's image export: plotly's ``kaleido``
1.x drives a Chrome/Chromium it downloads or finds at run time, which offline machines and CI lack.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .report import Figure, render_html

COLORS = {"post": "#d62728", "aware": "#1f77b4", "aware-finetune": "#2ca02c"}
LABELS = {
    "post": "post: NAS, then compress (no fine-tune)",
    "aware": "aware: compression-aware, no fine-tune",
    "aware-finetune": "aware-finetune: compression-aware + fine-tune",
}


def _cost_metrics(summary: dict[str, Any]) -> list[str]:
    return [m for m in summary["metrics"] if m != "accuracy"]


def front_2d(models: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """Models not dominated in (accuracy up, ``cost`` down), by increasing cost."""
    out: list[dict[str, Any]] = []
    for m in sorted(models, key=lambda m: (m[cost], -m["accuracy"])):
        if not out or m["accuracy"] > out[-1]["accuracy"]:
            out.append(m)
    return out


def _post_final_best(summary: dict[str, Any]) -> float | None:
    row = next((r for r in summary["table"] if r["workflow"] == "post"), None)
    return None if row is None else row["best_feasible_val_accuracy"]


def plotly_figures(summary: dict[str, Any]) -> list[Figure]:
    """Best-accuracy-vs-trial curves and the fronts overlaid (accuracy against each cost)."""
    import plotly.graph_objects as go

    curves = go.Figure()
    for name, curve in summary["curves"].items():
        curves.add_trace(
            go.Scatter(
                x=list(range(1, len(curve) + 1)),
                y=curve,
                mode="lines+markers",
                name=LABELS.get(name, name) + (" [FP32 search]" if name == "post" else ""),
                line=dict(color=COLORS.get(name), shape="hv"),
            )
        )
    post_best = _post_final_best(summary)
    if post_best is not None and summary["curves"].get("post"):
        curves.add_trace(
            go.Scatter(
                x=[len(summary["curves"]["post"])],
                y=[post_best],
                mode="markers",
                marker=dict(symbol="star", size=14, color=COLORS["post"]),
                name="post after compression (best feasible)",
            )
        )
    curves.update_layout(
        title="Best feasible validation accuracy vs search trial", xaxis_title="trial", yaxis_title="accuracy"
    )
    figs = [Figure("curves", "Best accuracy vs trial", curves)]
    for cost in _cost_metrics(summary):
        fig = go.Figure()
        for name, models in summary["models"].items():
            pts = front_2d(models, cost)
            fig.add_trace(
                go.Scatter(
                    x=[m[cost] for m in models],
                    y=[m["accuracy"] for m in models],
                    mode="markers",
                    name=f"{name}: all models",
                    marker=dict(color=COLORS.get(name), opacity=0.3),
                    showlegend=False,
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=[p[cost] for p in pts],
                    y=[p["accuracy"] for p in pts],
                    mode="lines+markers",
                    name=LABELS.get(name, name),
                    text=[f"trial {p['trial']}" for p in pts],
                    line=dict(color=COLORS.get(name), shape="hv"),
                )
            )
        fig.update_layout(title=f"Pareto fronts: accuracy vs {cost}", xaxis_title=cost, yaxis_title="accuracy")
        figs.append(Figure(f"front-{cost}", f"Fronts: accuracy vs {cost}", fig))
    return figs


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


TABLE_KEYS = (
    "workflow",
    "search_trials",
    "evaluated_models",
    "feasible_models",
    "hypervolume",
    "best_feasible_val_accuracy",
    "best_feasible_test_accuracy",
    "wall_time_s",
)


def table_html(summary: dict[str, Any]) -> str:
    head = "".join(f"<th>{k}</th>" for k in TABLE_KEYS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row[k]))}</td>" for k in TABLE_KEYS) + "</tr>"
        for row in summary["table"]
    )
    ref = ", ".join(f"{k} {v:.4g}" for k, v in summary["reference_point"].items())
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f"<p>Hypervolume: normalized to the box between the ideal point (accuracy 1, cost 0) and the "
        f"fixed reference point ({html.escape(ref)}); feasible models only. Wall time: sum of trial "
        f"durations in seconds.</p>"
    )


def table_markdown(summary: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(TABLE_KEYS) + " |", "|" + "---|" * len(TABLE_KEYS)]
    lines += ["| " + " | ".join(_fmt(row[k]) for k in TABLE_KEYS) + " |" for row in summary["table"]]
    return "\n".join(lines) + "\n"


def write_png(summary: dict[str, Any], path: Path, title: str = "") -> Path:
    """One PNG: the curves and, per cost metric, the fronts overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    costs = _cost_metrics(summary)
    fig, axes = plt.subplots(1, 1 + len(costs), figsize=(5 * (1 + len(costs)), 4), squeeze=False)
    ax = axes[0][0]
    for name, curve in summary["curves"].items():
        xs = [i + 1 for i, v in enumerate(curve) if v is not None]
        ys = [v for v in curve if v is not None]
        label = name + (" (FP32 search)" if name == "post" else "")
        ax.step(xs, ys, where="post", color=COLORS.get(name), label=label, marker="o", ms=3)
    post_best = _post_final_best(summary)
    if post_best is not None and summary["curves"].get("post"):
        n = len(summary["curves"]["post"])
        ax.scatter([n], [post_best], marker="*", s=120, color=COLORS["post"], label="post after compression", zorder=3)
    ax.set_xlabel("search trial")
    ax.set_ylabel("best feasible val accuracy")
    ax.set_title("Best accuracy vs trial")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for k, cost in enumerate(costs, start=1):
        ax = axes[0][k]
        for name, models in summary["models"].items():
            pts = front_2d(models, cost)
            ax.scatter(
                [m[cost] for m in models], [m["accuracy"] for m in models], color=COLORS.get(name), alpha=0.25, s=10
            )
            ax.step(
                [p[cost] for p in pts],
                [p["accuracy"] for p in pts],
                where="post",
                color=COLORS.get(name),
                label=name,
                marker="o",
                ms=4,
            )
        ax.set_xlabel(cost)
        ax.set_ylabel("val accuracy")
        ax.set_title(f"Fronts: accuracy vs {cost}")
        if cost in ("flash_bytes", "sram_bytes"):
            ax.set_xscale("log")
            # Plain byte counts at 1, 2 and 5 per decade: matplotlib's minor labels (2×10³, 3×10³, ...) overlap.
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_compare(summary: dict[str, Any], out: Path, title: str) -> dict[str, Path]:
    """Write ``compare.json``, ``compare.html``, ``compare.md`` and ``compare.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "compare.json",
        "html": out / "compare.html",
        "md": out / "compare.md",
        "png": out / "compare.png",
    }
    paths["json"].write_text(json.dumps(summary, indent=2))
    winner = summary["winner"]
    verdict = (
        f"<p>Largest hypervolume: <b>{html.escape(str(winner['hypervolume']))}</b>; best feasible accuracy: "
        f"<b>{html.escape(str(winner['best_feasible_val_accuracy']))}</b>.</p>"
    )
    sections = [("Result", verdict + table_html(summary))]
    paths["html"].write_text(render_html(title, sections, plotly_figures(summary)))
    paths["md"].write_text(
        f"# {title}\n\n{table_markdown(summary)}\nLargest hypervolume: {winner['hypervolume']}; "
        f"best feasible accuracy: {winner['best_feasible_val_accuracy']}.\n"
    )
    write_png(summary, paths["png"], title)
    return paths


__all__ = ["plotly_figures", "table_markdown", "write_compare", "write_png"]
