"""Per-class accuracy and confusion matrices of an exported model and its baseline (report.md, PNG).

Example:
    >>> import numpy as np
    >>> d = class_diagnostics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
    >>> d["confusion"], d["per_class_accuracy"]
    ([[1, 1], [0, 2]], [0.5, 1.0])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MARKDOWN_MAX_CLASSES = 20
"""Confusion matrices with more classes are left to the PNG and report.json (a table would not read)."""


def class_diagnostics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Confusion matrix (rows: true class, columns: predicted), per-class support and accuracy."""
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    support = confusion.sum(axis=1)
    per_class = [float(confusion[i, i] / support[i]) if support[i] else None for i in range(n)]
    return {
        "labels": list(labels),
        "confusion": confusion.tolist(),
        "support": support.tolist(),
        "per_class_accuracy": per_class,
    }


def write_confusion_png(diagnostics: dict[str, dict[str, Any]], path: Path) -> Path:
    """One PNG with a confusion-matrix heat map per model in ``diagnostics`` (name → `class_diagnostics`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(diagnostics), figsize=(5.5 * len(diagnostics), 5), squeeze=False)
    for ax, (name, d) in zip(axes[0], diagnostics.items(), strict=True):
        matrix = np.asarray(d["confusion"])
        ax.imshow(matrix, cmap="Blues")
        ticks = range(len(d["labels"]))
        ax.set_xticks(ticks, d["labels"], fontsize=7, rotation=90)
        ax.set_yticks(ticks, d["labels"], fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
        if len(d["labels"]) <= MARKDOWN_MAX_CLASSES:
            for (i, j), v in np.ndenumerate(matrix):
                if v:
                    ax.text(
                        j,
                        i,
                        str(v),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if v > matrix.max() / 2 else "black",
                    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def diagnostics_markdown(diagnostics: dict[str, dict[str, Any]], png: str | None) -> list[str]:
    """Markdown lines: per-class accuracy of every model side by side, then each model's confusion matrix."""
    names = list(diagnostics)
    first = diagnostics[names[0]]
    lines = ["", "## Per-class accuracy (test split)", "", "| class | samples | " + " | ".join(names) + " |"]
    lines.append("|---|---:|" + "---:|" * len(names))
    for i, label in enumerate(first["labels"]):
        cells = " | ".join(_pct(diagnostics[n]["per_class_accuracy"][i]) for n in names)
        lines.append(f"| {label} | {first['support'][i]} | {cells} |")
    for name in names:
        d = diagnostics[name]
        lines += ["", f"## Confusion matrix: {name} (rows true, columns predicted)", ""]
        if len(d["labels"]) > MARKDOWN_MAX_CLASSES:
            lines.append(f"{len(d['labels'])} classes: see the PNG and report.json (`diagnostics`).")
            continue
        lines.append("| true \\ predicted | " + " | ".join(d["labels"]) + " |")
        lines.append("|---|" + "---:|" * len(d["labels"]))
        lines += [
            f"| {label} | " + " | ".join(map(str, row)) + " |"
            for label, row in zip(d["labels"], d["confusion"], strict=True)
        ]
    if png:
        lines += ["", f"![confusion matrices]({png})"]
    return lines


__all__ = ["MARKDOWN_MAX_CLASSES", "class_diagnostics", "diagnostics_markdown", "write_confusion_png"]
