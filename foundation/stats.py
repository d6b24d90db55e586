"""Bootstrap statistics over per-example scores. Seeded, so the same scores give the same answer."""
from __future__ import annotations

import numpy as np


def bootstrap_ci(scores, confidence: float = 0.95, samples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile bootstrap CI of the mean.

    >>> bootstrap_ci([1, 1, 1, 1])
    (1.0, 1.0, 1.0)
    """
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(samples, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_bootstrap(best, other, confidence: float = 0.95, samples: int = 2000, seed: int = 0) -> dict:
    """Compare two candidates scored on the same examples.

    Returns the mean difference ``best - other``, its CI, and the one-sided p-value that the
    best is not better (share of resamples with difference <= 0).
    """
    a, b = np.asarray(best, dtype=float), np.asarray(other, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs scores on the same examples")
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(samples, d.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return {
        "diff": float(d.mean()),
        "ci_low": float(np.quantile(means, alpha)),
        "ci_high": float(np.quantile(means, 1 - alpha)),
        "p_value": float((means <= 0).mean()) if d.any() else 1.0,
    }


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def judge(best, other, verdict, seed: int = 0) -> dict:
    """The adequacy judgement the verdict and the tuner's selection share: ``other`` is *adequate*
    unless a paired bootstrap shows it significantly worse than ``best`` (at ``verdict.confidence``),
    and even then when it is within ``verdict.min_gain`` of it.

    >>> from types import SimpleNamespace
    >>> judge([1, 1, 0, 1], [1, 1, 0, 1], SimpleNamespace(confidence=0.95, bootstrap_samples=200, min_gain=0.02))["adequate"]
    True
    """
    test = paired_bootstrap(best, other, verdict.confidence, verdict.bootstrap_samples, seed)
    worse = test["ci_low"] > 0
    return {**test, "significantly_worse": worse, "adequate": (not worse) or test["diff"] <= verdict.min_gain}
