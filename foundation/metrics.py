"""Per-example quality metrics, each registered once with ``register_metric``.

A metric maps (prediction, reference) to a score in [0, 1]. Scores are kept per example so
candidates can be compared pairwise. Each entry carries everything the rest of the code needs
to know about it: its label for readers, the ``metric:`` options it reads, the check that a
reference can ever be matched, and whether it needs the embedder. Adding a metric is one
``register_metric`` call plus its row in ``tests/test_metrics.py``.

>>> from foundation.config import MetricConfig
>>> score(MetricConfig(name="exact_match"), ["  Paris. "], ["paris"])
[1.0]
>>> [round(s, 2) for s in score(MetricConfig(name="token_f1"), ["the capital is Paris"], ["Paris"])]
[0.5]
"""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Callable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
# In labels _ - / separate words: card_arrival, Sci/Tech and not-spam are answered in words.
_LABEL_PUNCT = str.maketrans({**{c: None for c in string.punctuation}, "_": " ", "-": " ", "/": " "})


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation or articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def normalize_label(text: str) -> str:
    """Labels keep their articles: a label "A" (a multiple-choice letter) must not vanish.

    >>> normalize_label(" A. ")
    'a'
    >>> normalize_label("card_arrival") == normalize_label("Card arrival.")
    True
    """
    return " ".join(str(text).lower().translate(_LABEL_PUNCT).split())


@dataclass(frozen=True)
class Metric:
    """One registered metric and the facts the rest of the code reads from it."""

    name: str
    fn: Callable[..., float]  # (prediction, reference, **options) -> score in [0, 1]
    label: str  # what a reader calls it: "exact match"
    description: str
    options: tuple[str, ...] = ()  # the `metric:` keys it reads (labels, fields)
    required: tuple[str, ...] = ()  # options it cannot do without
    check_reference: Callable[..., str | None] | None = None  # (reference, **options) -> why it can never score
    check_options: Callable[..., str | None] | None = None  # (**options) -> what is wrong with them
    needs_embedder: bool = False
    batch: Callable | None = None  # (predictions, references, embedder) -> scores, when scoring together is faster
    grades: bool = False  # scores one answer against its reference cheaply: usable as an RL reward (GRPO)
    format_check: Callable[..., bool] | None = None  # (prediction, **options) -> is it in the expected form
    grade_records: Callable | None = None  # (task, predictions, records) -> (scores, report): needs the whole task

    def score_all(self, predictions: list[str], references: list[str], options: dict | None = None,
                  embedder=None) -> list[float]:
        options = {k: v for k, v in (options or {}).items() if k in self.options and v is not None}
        if self.needs_embedder and embedder is None:
            raise ValueError(f"metric {self.name} needs an embedder")
        if self.batch is not None:
            return self.batch(predictions, references, embedder)
        return [float(self.fn(p, r, **options)) for p, r in zip(predictions, references)]


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, label: str, description: str, options: tuple[str, ...] = (),
                    required: tuple[str, ...] = (), check_reference=None, check_options=None,
                    needs_embedder: bool = False, batch=None, grades: bool = False, format_check=None,
                    grade_records=None):
    """Decorator adding a metric to the registry; checks the entry once, here."""

    def wrap(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        if not set(required) <= set(options):
            raise ValueError(f"metric {name!r}: required options must be among its options")
        unknown = set(options) - set(OPTION_KEYS)
        if unknown:
            raise ValueError(f"metric {name!r}: unknown options {sorted(unknown)}; known: {OPTION_KEYS}")
        METRICS[name] = Metric(name, fn, label, description, tuple(options), tuple(required), check_reference,
                               check_options, needs_embedder, batch, grades, format_check, grade_records)
        return fn

    return wrap


OPTION_KEYS = ("labels", "fields", "judge", "rubric")  # the `metric:` keys besides `name` (foundation.config.MetricConfig)


def metric_options(metric_config) -> dict:
    """The options a task's ``metric:`` section gives its metric."""
    return {k: getattr(metric_config, k) for k in METRICS[metric_config.name].options}


def score(task_or_metric, predictions: list[str], references: list[str], embedder=None) -> list[float]:
    """Score every (prediction, reference) pair with the task's metric; one float per example.

    ``task_or_metric`` is a TaskConfig or its ``metric`` section.
    """
    config = getattr(task_or_metric, "metric", task_or_metric)
    return METRICS[config.name].score_all(predictions, references, metric_options(config), embedder)


def score_records(task_or_metric, predictions: list[str], records, embedder=None, report: dict | None = None) -> list[float]:
    """``score`` against each record's reference and its alternatives (other acceptable answers,
    as SQuAD lists them): the best of them, as SQuAD scores. A metric that grades whole records
    (the LLM judge) gets the task and adds what it has to say to ``report``."""
    config = getattr(task_or_metric, "metric", task_or_metric)
    metric = METRICS[config.name]
    if metric.grade_records is not None:
        if config is task_or_metric:
            raise ValueError(f"metric {metric.name} grades with the whole task (its compare: models), not its metric section")
        scores, said = metric.grade_records(task_or_metric, predictions, records)
        if report is not None:
            report.update(said)
        return scores
    index, preds, refs = [], [], []
    for i, (p, r) in enumerate(zip(predictions, records)):
        for ref in (r.output, *r.alternatives):
            index.append(i)
            preds.append(p)
            refs.append(ref)
    best = [float("-inf")] * len(records)
    for i, s in zip(index, score(task_or_metric, preds, refs, embedder)):
        best[i] = max(best[i], s)
    return best


def check_reference(metric_config, reference: str) -> str | None:
    """Why ``reference`` can never be matched by the task's metric (a data error), or None."""
    metric = METRICS[metric_config.name]
    if metric.check_reference is None:
        return None
    return metric.check_reference(reference, **metric_options(metric_config))


# ---------------------------------------------------------------- reference checks

def _not_empty_when_normalised(reference: str, **_) -> str | None:
    if not normalize(reference):
        return (f"reference {reference!r} is empty once normalised (case, punctuation and articles removed), "
                "so no answer can match it")
    return None


def _one_of_labels(reference: str, labels=None, **_) -> str | None:
    if normalize_label(reference) not in {normalize_label(x) for x in labels or ()}:
        return f"reference {reference!r} is not one of metric.labels"
    return None


def _labels_are_distinct(labels=None, **_) -> str | None:
    seen: dict[str, str] = {}
    for i, label in enumerate(labels or ()):
        key = normalize_label(label)
        if not key:
            return f"labels.{i}: label {label!r} is empty once case and punctuation are removed"
        if key in seen:
            return f"labels.{i}: label {label!r} is the same as {seen[key]!r} once case and punctuation are removed"
        seen[key] = label
    return None


def _json_object(reference: str, **_) -> str | None:
    if not isinstance(parse_json(reference), dict):
        return "metric json needs references that are JSON objects; this one is not"
    return None


# ---------------------------------------------------------------- the metrics

@register_metric("exact_match", grades=True, label="exact match", check_reference=_not_empty_when_normalised,
                 description="1 if the normalised prediction equals the normalised reference")
def exact_match(pred: str, ref: str) -> float:
    return float(normalize(pred) == normalize(ref))


@register_metric("token_f1", grades=True, label="token F1", check_reference=_not_empty_when_normalised,
                 description="F1 of normalised token overlap (SQuAD)")
def token_f1(pred: str, ref: str) -> float:
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


def _rouge_tokens(reference: str, **_) -> str | None:
    from rouge_score import tokenize

    if not tokenize.tokenize(reference, None):
        return f"reference {reference!r} has no word ROUGE can score (letters or digits), so every answer scores 0"
    return None


@register_metric("rouge_l", grades=True, label="ROUGE-L", check_reference=_rouge_tokens,
                 description="ROUGE-L F-measure (rouge-score, stemmed)")
def rouge_l(pred: str, ref: str) -> float:
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(_ROUGE.score(ref, pred)["rougeL"].fmeasure)


def first_label(pred: str, labels: list[str]) -> str | None:
    """The label the prediction names: an exact (normalised) match, else the earliest mention."""
    norm = normalize_label(pred)
    by_norm = {normalize_label(x): x for x in labels}
    if norm in by_norm:
        return by_norm[norm]
    best, best_pos = None, None
    for key, label in sorted(by_norm.items(), key=lambda kv: -len(kv[0])):
        m = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", norm)
        if m and (best_pos is None or m.start() < best_pos):
            best, best_pos = label, m.start()
    return best


@register_metric("accuracy", label="accuracy", options=("labels",), required=("labels",), grades=True,
                 format_check=lambda pred, labels=None, **_: first_label(pred, labels or []) is not None,
                 check_reference=_one_of_labels, check_options=_labels_are_distinct,
                 description="1 if the label named in the prediction is the reference label")
def accuracy(pred: str, ref: str, labels: list[str] | None = None) -> float:
    named = first_label(pred, labels or [ref])
    return float(named is not None and normalize_label(named) == normalize_label(ref))


@register_metric("contains", grades=True, label="answer contained", check_reference=_not_empty_when_normalised,
                 description="1 if the normalised reference appears in the normalised prediction")
def contains(pred: str, ref: str) -> float:
    r = normalize(ref)
    return float(bool(r) and re.search(rf"(?<!\w){re.escape(r)}(?!\w)", normalize(pred)) is not None)


def parse_json(text: str):
    """A JSON value from a model answer: tolerates a ```json fence and text around one object."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        start, end = text.find("{"), text.rfind("}")
        if start != -1 and end > start:
            try:
                return json.loads(text[start : end + 1])
            except (ValueError, RecursionError):
                return None
    return None


@register_metric("json", label="JSON fields correct", options=("fields",), check_reference=_json_object, grades=True,
                 format_check=lambda pred, **_: isinstance(parse_json(pred), dict),
                 description="valid JSON object and the share of reference fields it matches")
def json_fields(pred: str, ref: str, fields: list[str] | None = None) -> float:
    got, want = parse_json(pred), parse_json(ref)
    if not isinstance(got, dict) or not isinstance(want, dict):
        return 0.0
    keys = fields or list(want)
    if not keys:
        return 1.0
    same = sum(1 for k in keys if k in got and _norm_value(got[k]) == _norm_value(want.get(k)))
    return same / len(keys)


def _norm_value(v):
    return normalize(v) if isinstance(v, str) else v


def _embedding_batch(predictions: list[str], references: list[str], embedder) -> list[float]:
    import numpy as np

    a = embedder.encode([p or " " for p in predictions], normalize_embeddings=True, batch_size=64)
    b = embedder.encode([r or " " for r in references], normalize_embeddings=True, batch_size=64)
    return [float(x) for x in np.clip((a * b).sum(axis=1), 0.0, 1.0)]


@register_metric("embedding_similarity", label="embedding similarity", needs_embedder=True, batch=_embedding_batch,
                 description="cosine similarity of embedder vectors, clipped to [0, 1]")
def embedding_similarity(pred: str, ref: str) -> float:
    raise ValueError("embedding_similarity is scored in batches with the embedder (Metric.score_all)")


def _judge_records(task, predictions: list[str], records) -> tuple[list[float], dict]:
    from foundation.judge import grade_records

    return grade_records(task, predictions, records)


@register_metric("llm_judge", label="LLM judge grade", options=("judge", "rubric"), required=("judge",),
                 grade_records=_judge_records,
                 description="a compare: model grades each answer against the reference (0-10, scaled to 0-1)")
def llm_judge(pred: str, ref: str, judge=None, rubric=None) -> float:
    raise ValueError("llm_judge grades whole records with the task's judge model (Metric.grade_records)")
