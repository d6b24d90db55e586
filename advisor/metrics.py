"""Per-example quality metrics, each registered once with ``register_metric``.

A metric maps (prediction, reference) to a score in [0, 1]. Scores are kept per example so
candidates can be compared pairwise.

>>> score("exact_match", "  Paris. ", "paris")
1.0
>>> round(score("token_f1", "the capital is Paris", "Paris"), 2)
0.4
"""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Callable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation or articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., float]
    description: str
    needs_embedder: bool = False


METRICS: dict[str, Metric] = {}


def register_metric(name: str, description: str, needs_embedder: bool = False):
    """Decorator adding a metric to the registry; names must be unique."""

    def wrap(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        METRICS[name] = Metric(name, fn, description, needs_embedder)
        return fn

    return wrap


@register_metric("exact_match", "1 if the normalised prediction equals the normalised reference")
def exact_match(pred: str, ref: str, **_) -> float:
    return float(normalize(pred) == normalize(ref))


@register_metric("token_f1", "F1 of normalised token overlap (SQuAD)")
def token_f1(pred: str, ref: str, **_) -> float:
    from collections import Counter

    p, r = normalize(pred).split(), normalize(ref).split()
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


_ROUGE = None


@register_metric("rouge_l", "ROUGE-L F-measure (rouge-score, stemmed)")
def rouge_l(pred: str, ref: str, **_) -> float:
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(_ROUGE.score(ref, pred)["rougeL"].fmeasure)


def _first_label(pred: str, labels: list[str]) -> str | None:
    """The label the prediction names: an exact normalised match, else the earliest mention."""
    norm = normalize(pred)
    by_norm = {normalize(l): l for l in labels}
    if norm in by_norm:
        return by_norm[norm]
    best, best_pos = None, None
    for key, label in sorted(by_norm.items(), key=lambda kv: -len(kv[0])):
        m = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", norm)
        if m and (best_pos is None or m.start() < best_pos):
            best, best_pos = label, m.start()
    return best


@register_metric("accuracy", "1 if the label named in the prediction is the reference label")
def accuracy(pred: str, ref: str, labels: list[str] | None = None, **_) -> float:
    labels = labels or [ref]
    return float(_first_label(pred, labels) is not None and normalize(_first_label(pred, labels)) == normalize(ref))


@register_metric("contains", "1 if the normalised reference appears in the normalised prediction")
def contains(pred: str, ref: str, **_) -> float:
    r = normalize(ref)
    return float(bool(r) and re.search(rf"(?<!\w){re.escape(r)}(?!\w)", normalize(pred)) is not None)


def _parse_json(text: str):
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        start, end = text.find("{"), text.rfind("}")
        if start != -1 and end > start:
            try:
                return json.loads(text[start : end + 1])
            except ValueError:
                return None
    return None


@register_metric("json", "valid JSON object and the share of reference fields it matches")
def json_fields(pred: str, ref: str, fields: list[str] | None = None, **_) -> float:
    got, want = _parse_json(pred), _parse_json(ref)
    if not isinstance(got, dict) or not isinstance(want, dict):
        return 0.0
    keys = fields or list(want)
    if not keys:
        return 1.0
    same = sum(1 for k in keys if k in got and _norm_value(got[k]) == _norm_value(want.get(k)))
    return same / len(keys)


def _norm_value(v):
    return normalize(v) if isinstance(v, str) else v


@register_metric("embedding_similarity", "cosine similarity of embedder vectors, clipped to [0, 1]", needs_embedder=True)
def embedding_similarity(pred: str, ref: str, embedder=None, **_) -> float:
    import numpy as np

    if embedder is None:
        raise ValueError("embedding_similarity needs an embedder")
    a, b = embedder.encode([pred or " ", ref or " "], normalize_embeddings=True)
    return float(np.clip(float(np.dot(a, b)), 0.0, 1.0))


def score(name: str, pred: str, ref: str, **options) -> float:
    return METRICS[name].fn(pred, ref, **options)


def score_all(name: str, preds: list[str], refs: list[str], *, labels=None, fields=None, embedder=None) -> list[float]:
    """Score every (prediction, reference) pair; one float per example."""
    metric = METRICS[name]
    if metric.needs_embedder:
        import numpy as np

        a = embedder.encode([p or " " for p in preds], normalize_embeddings=True, batch_size=64)
        b = embedder.encode([r or " " for r in refs], normalize_embeddings=True, batch_size=64)
        return [float(x) for x in np.clip((a * b).sum(axis=1), 0.0, 1.0)]
    return [metric.fn(p, r, labels=labels, fields=fields) for p, r in zip(preds, refs)]
