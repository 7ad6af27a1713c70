"""How well predicted latencies match measured ones: rank correlation, error, share within a tolerance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def prediction_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Spearman ρ, Kendall τ, RMSE (ms), mean absolute relative error and the share within ±10% / ±20%.

    Example:
        >>> m = prediction_metrics([1.0, 2.0, 3.3], [1.0, 2.1, 3.0])
        >>> m["spearman"], m["within_10pct"]
        (1.0, 1.0)
    """
    from scipy import stats

    p = np.asarray(predicted, dtype=float)
    y = np.asarray(measured, dtype=float)
    if len(p) != len(y) or len(y) < 2:
        raise ValueError("need at least two (predicted, measured) pairs of equal length")
    rel = np.abs(p - y) / y
    spearman = stats.spearmanr(p, y).statistic
    kendall = stats.kendalltau(p, y).statistic
    return {
        "n": int(len(y)),
        "spearman": float(spearman) if math.isfinite(spearman) else 0.0,
        "kendall": float(kendall) if math.isfinite(kendall) else 0.0,
        "rmse_ms": float(np.sqrt(np.mean((p - y) ** 2))),
        "mean_abs_rel_error": float(rel.mean()),
        "within_10pct": float(np.mean(rel <= 0.10)),
        "within_20pct": float(np.mean(rel <= 0.20)),
    }
