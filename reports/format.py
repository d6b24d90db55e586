"""Numbers and texts as both renderers show them. Money has one formatter, shared with the verdict
(``foundation.costs.fmt_money``)."""
from __future__ import annotations

import math
from typing import Any

from foundation.costs import fmt_money

PARAM_ALIAS = {"learning_rate": "lr", "lora_alpha": "alpha", "target_modules": "targets",
               "num_virtual_tokens": "virtual tokens", "weight_decay": "wd", "warmup_ratio": "warmup",
               "lora_dropout": "dropout", "per_device_train_batch_size": "batch"}
MAX_TEXT = 800  # characters of one input/answer shown; longer texts are cut with an ellipsis


def ci_label(confidence: float) -> str:
    """The label of an interval at ``confidence``.

    >>> ci_label(0.9), ci_label(0.975)
    ('90% CI', '97.5% CI')
    """
    return f"{confidence * 100:g}% CI"


def fmt_quality(x: float | None) -> str:
    """Scores are in [0, 1]; a manager reads them as a percentage.

    >>> fmt_quality(0.8125)
    '81.2%'
    """
    if _missing(x):
        return _missing(x)
    return f"{x * 100:.1f}%"


def fmt_ci(low: float, high: float) -> str:
    """A confidence interval as a range of percentages.

    >>> fmt_ci(0.7, 0.85)
    '70.0–85.0%'
    """
    if _missing(low) or _missing(high):
        return "–"
    return f"{low * 100:.1f}–{high * 100:.1f}%"


def _missing(x) -> str | None:
    """How a value that is not a finite number is shown: "–" when unknown, "∞" when infinite."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return None


def fmt_ms(x: float | None) -> str:
    if _missing(x):
        return _missing(x)
    return f"{x / 1000:.2f} s" if x >= 10_000 else f"{x:,.0f} ms"


def fmt_seconds(x: float | None) -> str:
    """Seconds in the unit a person would use.

    >>> [fmt_seconds(v) for v in (4.2, 95, 5400)]
    ['4.2 s', '1.6 min', '1.5 h']
    """
    if _missing(x):
        return _missing(x)
    if x < 60:
        return f"{x:.1f} s"
    if x < 3600:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.1f} h"


def fmt_memory(mb: float | None) -> str:
    if _missing(mb):
        return _missing(mb)
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:,.0f} MB"


def fmt_params(params: dict[str, Any], skip: tuple[str, ...] = ("method",)) -> str:
    """Trial parameters in one short line.

    >>> fmt_params({"method": "lora", "rank": 8, "learning_rate": 0.0003})
    'rank 8 · lr 3e-04'
    """
    parts = []
    for key, value in params.items():
        if key in skip:
            continue
        if isinstance(value, float):
            value = f"{value:.0e}" if (value != 0 and (abs(value) < 0.01 or abs(value) >= 1e4)) else f"{value:.3g}"
        parts.append(f"{PARAM_ALIAS.get(key, key)} {value}")
    return " · ".join(parts)


def cut_text(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


__all__ = ["ci_label", "cut_text", "fmt_ci", "fmt_memory", "fmt_money", "fmt_ms", "fmt_params", "fmt_quality",
           "fmt_seconds"]
