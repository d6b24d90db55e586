"""Build a report once from ``results.json``; the terminal and the HTML file render it.

``build_report`` is a pure function of the results and the run directory (it only reads the
predictions files the results name). Everything a renderer shows is already decided here:
the recommendation in plain words, the key figures, the comparison rows with the winner
marked, the before/after examples, the chart data, the study tables and the appendix.

>>> from advisor.results import Results
>>> report = build_report(Results(advise_version="0", created="2026-01-01", task={"name": "t"},
...                               environment={}, data={}, candidates=[]), run_dir=".")
>>> report.headline
'No candidate was measured.'
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from advisor.results import CandidateResult, Results, Study, Trial

KIND = {"prompt": "Prompt only", "rag": "Retrieval (RAG)", "finetune": "Fine-tuned model"}
ACTION = {
    "prompt": "Ship the base model with a good prompt; no retrieval and no fine-tuning are needed.",
    "rag": "Ship retrieval-augmented generation (RAG): the base model answers with passages "
           "looked up in your documents. No fine-tuning is needed.",
    "finetune": "Fine-tune the model: prompting and retrieval are not good enough for this task.",
}
METRIC_LABEL = {
    "exact_match": "exact match", "token_f1": "token F1", "rouge_l": "ROUGE-L", "accuracy": "accuracy",
    "contains": "answer contained", "json": "JSON fields correct", "embedding_similarity": "embedding similarity",
}
PARAM_ALIAS = {"learning_rate": "lr", "lora_alpha": "alpha", "target_modules": "targets",
               "num_virtual_tokens": "virtual tokens", "weight_decay": "wd", "warmup_ratio": "warmup",
               "lora_dropout": "dropout", "per_device_train_batch_size": "batch"}
MAX_TEXT = 800  # characters of one input/answer shown; longer texts are cut with an ellipsis
MAX_EXAMPLES = 6
TOP_TRIALS = 5


# ---------------------------------------------------------------- the report

@dataclass(frozen=True)
class Figure:
    """One key figure at the top of the report: ``value`` is already formatted."""

    label: str
    value: str
    detail: str = ""


@dataclass(frozen=True)
class CandidateRow:
    name: str
    baseline: str
    kind: str
    description: str
    quality: float
    ci_low: float
    ci_high: float
    n: int
    latency_p50_ms: float
    latency_p95_ms: float
    throughput_qps: float
    tokens_per_query: float
    cost_per_1k_usd: float
    monthly_cost_usd: float
    one_off_cost_usd: float
    one_off_seconds: float
    total_cost_usd: float
    peak_memory_mb: float
    winner: bool
    best_quality: bool
    status: str  # plain words: recommended / as good, costs more / significantly worse / ...
    diff_vs_best: float | None = None
    p_value: float | None = None
    violations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    candidate: str
    prediction: str
    score: float
    winner: bool


@dataclass(frozen=True)
class Example:
    index: int
    input: str
    reference: str
    answers: tuple[Answer, ...]
    why: str


@dataclass(frozen=True)
class QualityCostPoint:
    name: str
    cost_usd: float
    quality: float
    ci_low: float
    ci_high: float
    winner: bool


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # complete, pruned, failed, running, waiting
    method: str
    params: str
    quality: float | None  # validation quality: what the search optimised
    eval_quality: float | None
    train_cost_usd: float | None
    train_seconds: float | None
    estimated_train_seconds: float | None
    latency_p95_ms: float | None
    peak_memory_mb: float | None
    trainable_params: int | None
    steps: int | None
    pareto: bool
    best: bool
    note: str


@dataclass(frozen=True)
class HistoryPoint:
    number: int
    quality: float | None
    best_so_far: float | None
    state: str


@dataclass(frozen=True)
class MethodRow:
    method: str
    trials: int
    complete: int
    pruned: int
    failed: int
    best_quality: float | None
    excluded: bool
    reason: str


@dataclass(frozen=True)
class StudyView:
    name: str
    status: str
    interrupted: bool
    sampler: str
    pruner: str
    storage: str
    selection_rule: str
    counts: dict[str, int]
    best: TrialRow | None
    best_eval: tuple[float, float, float, int] | None  # mean, ci_low, ci_high, n on the eval split
    top_trials: tuple[TrialRow, ...]
    pareto: tuple[TrialRow, ...]
    trials: tuple[TrialRow, ...]
    methods: tuple[MethodRow, ...]
    importance: tuple[tuple[str, float], ...]
    history: tuple[HistoryPoint, ...]
    total_train_cost_usd: float
    total_train_seconds: float
    summary: str


@dataclass(frozen=True)
class Appendix:
    task_yaml: str
    data_formats: tuple[tuple[str, str], ...]
    data_sizes: tuple[tuple[str, int], ...]
    leakage_count: int | None
    leakage_examples: tuple[str, ...]
    data_other: tuple[tuple[str, str], ...]
    environment: tuple[tuple[str, str], ...]
    seeds: tuple[tuple[str, str], ...]
    timings: tuple[tuple[str, float], ...]
    total_seconds: float
    rule: str
    metric: str
    metric_description: str
    schema_version: int
    advise_version: str
    created: str


@dataclass(frozen=True)
class Report:
    """Everything the renderers show, already decided and formatted where it matters."""

    title: str
    task_name: str
    created: str
    status: str
    notices: tuple[str, ...]  # e.g. "the run was interrupted"; shown prominently
    headline: str
    recommendation: str  # the one-paragraph answer for a manager
    winner: str | None
    winner_kind: str | None
    reasons: tuple[str, ...]
    cautions: tuple[str, ...]
    figures: tuple[Figure, ...]
    metric: str
    metric_label: str
    queries_per_month: int
    horizon_months: float
    rows: tuple[CandidateRow, ...]
    quality_cost: tuple[QualityCostPoint, ...]
    examples: tuple[Example, ...]
    examples_differ: bool  # False when every option answered alike and the examples are just the first few
    examples_note: str
    study: StudyView | None
    appendix: Appendix


# ---------------------------------------------------------------- formatting (shared by both renderers)

def fmt_quality(x: float | None) -> str:
    """Scores are in [0, 1]; a manager reads them as a percentage.

    >>> fmt_quality(0.8125)
    '81.2%'
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x * 100:.1f}%"


def fmt_ci(low: float, high: float) -> str:
    """A confidence interval as a range of percentages.

    >>> fmt_ci(0.7, 0.85)
    '70.0–85.0%'
    """
    return f"{low * 100:.1f}–{high * 100:.1f}%"


def fmt_money(x: float | None) -> str:
    """Dollars with two significant digits below $1.

    >>> [fmt_money(v) for v in (0, 0.0042, 0.021, 0.34, 3.5, 12345)]
    ['$0', '$0.0042', '$0.021', '$0.34', '$3.50', '$12,345']
    """
    if x is None:
        return "–"
    if x == 0:
        return "$0"
    if abs(x) < 0.0001:
        return "<$0.0001" if x > 0 else f"-{fmt_money(-x)}"
    if abs(x) < 1:  # two significant digits, so $0.021 per 1,000 queries does not read as $0.02
        return f"${x:.{max(2, 1 - math.floor(math.log10(abs(x))))}f}"
    if abs(x) < 1000:
        return f"${x:,.2f}"
    return f"${x:,.0f}"


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x / 1000:.2f} s" if x >= 10_000 else f"{x:,.0f} ms"


def fmt_seconds(x: float | None) -> str:
    """Seconds in the unit a person would use.

    >>> [fmt_seconds(v) for v in (4.2, 95, 5400)]
    ['4.2 s', '1.6 min', '1.5 h']
    """
    if x is None:
        return "–"
    if x < 60:
        return f"{x:.1f} s"
    if x < 3600:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.1f} h"


def fmt_memory(mb: float | None) -> str:
    if mb is None:
        return "–"
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


def _cut(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


# ---------------------------------------------------------------- building

def build_report(results: Results, run_dir: str | Path | None) -> Report:
    """Turn results (and the predictions files in ``run_dir``) into a :class:`Report`.

    With ``run_dir=None`` the predictions are not read and the report has no examples.
    """
    task = results.task or {}
    cons = _constraints(task)
    metric = str((task.get("metric") or {}).get("name", "score"))
    verdict = results.verdict
    comparisons = {c.candidate: c for c in verdict.comparisons} if verdict else {}
    winner = _find(results, verdict.winner) if verdict else None
    best = _find(results, verdict.best_quality) if verdict else None

    rows = tuple(_row(c, comparisons.get(c.name), winner, best, cons) for c in results.candidates)
    study = _study(results.study) if results.study else None
    notices = _notices(results, study)
    examples, examples_note = _examples(results, Path(run_dir), winner) if run_dir is not None else ((), "")
    examples_differ = any(len({a.prediction.strip() for a in e.answers}) > 1 for e in examples)
    name = str(task.get("name", "run"))
    return Report(
        title=f"advise: {name}",
        task_name=name,
        created=results.created,
        status=results.status,
        notices=notices,
        headline=_headline(results, winner),
        recommendation=_recommendation(results, winner, best, rows, study, cons, metric),
        winner=winner.name if winner else None,
        winner_kind=KIND.get(winner.baseline, winner.baseline) if winner else None,
        reasons=tuple(verdict.reasons) if verdict else (),
        cautions=tuple(verdict.cautions) if verdict else (),
        figures=_figures(results, winner, rows, study, cons, metric),
        metric=metric,
        metric_label=METRIC_LABEL.get(metric, metric.replace("_", " ")),
        queries_per_month=cons["queries_per_month"],
        horizon_months=cons["horizon_months"],
        rows=rows,
        quality_cost=tuple(QualityCostPoint(r.name, r.total_cost_usd, r.quality, r.ci_low, r.ci_high, r.winner)
                           for r in rows),
        examples=examples,
        examples_differ=examples_differ,
        examples_note=examples_note,
        study=study,
        appendix=_appendix(results, metric),
    )


def report_json(results: Results, run_dir: str | Path | None = None, *, indent: int | None = 2) -> str:
    """The summary a script wants (``advise run --json``): verdict, candidates, study, as JSON.

    Examples are left out unless ``run_dir`` is given (they need the predictions files).
    """
    report = build_report(results, run_dir)
    out = {
        "schema_version": results.schema_version,
        "status": report.status,
        "task": report.task_name,
        "notices": list(report.notices),
        "recommendation": report.recommendation,
        "verdict": None if results.verdict is None else {
            "recommendation": results.verdict.recommendation,
            "winner": results.verdict.winner,
            "best_quality": results.verdict.best_quality,
            "finetune_wins": results.verdict.finetune_wins,
            "headline": results.verdict.headline,
            "reasons": results.verdict.reasons,
            "cautions": results.verdict.cautions,
        },
        "metric": report.metric,
        "queries_per_month": report.queries_per_month,
        "horizon_months": report.horizon_months,
        "candidates": [asdict(r) for r in report.rows],
        "study": None if report.study is None else {
            k: v for k, v in asdict(report.study).items() if k not in ("history", "trials")
        },
    }
    if run_dir is not None:
        out["examples"] = [asdict(e) for e in report.examples]
    return json.dumps(out, indent=indent, ensure_ascii=False, default=str)


def _find(results: Results, name: str | None) -> CandidateResult | None:
    return next((c for c in results.candidates if c.name == name), None)


def _constraints(task: dict) -> dict:
    """The constraints section with the config's defaults filled in, read defensively."""
    from advisor.config import ConstraintsConfig

    raw = task.get("constraints") or {}
    try:
        return ConstraintsConfig.model_validate(raw).model_dump()
    except Exception:  # an older or hand-edited results file: fall back to defaults per key
        out = ConstraintsConfig().model_dump()
        out.update({k: v for k, v in raw.items() if k in out})
        return out


def _monthly(c: CandidateResult, cons: dict) -> float:
    return c.cost_per_1k_usd * cons["queries_per_month"] / 1000


def _total(c: CandidateResult, cons: dict) -> float:
    return c.one_off_cost_usd + _monthly(c, cons) * cons["horizon_months"]


def _row(c: CandidateResult, cmp, winner, best, cons) -> CandidateRow:
    is_winner = winner is not None and c.name == winner.name
    if is_winner:
        status = "recommended"
    elif cmp is None:
        status = "not compared"
    elif cmp.violations:
        status = "breaks a constraint"
    elif not cmp.adequate:
        status = "significantly worse"
    elif best is not None and c.name == best.name:
        status = "best quality, costs more"
    else:
        status = "as good, costs more"
    return CandidateRow(
        name=c.name, baseline=c.baseline, kind=KIND.get(c.baseline, c.baseline), description=c.description,
        quality=c.quality.mean, ci_low=c.quality.ci_low, ci_high=c.quality.ci_high, n=c.quality.n,
        latency_p50_ms=c.latency.p50_ms, latency_p95_ms=c.latency.p95_ms, throughput_qps=c.throughput_qps,
        tokens_per_query=c.tokens.prompt_mean + c.tokens.answer_mean,
        cost_per_1k_usd=c.cost_per_1k_usd, monthly_cost_usd=_monthly(c, cons),
        one_off_cost_usd=c.one_off_cost_usd, one_off_seconds=c.one_off_seconds,
        total_cost_usd=cmp.total_cost_usd if cmp is not None else _total(c, cons),
        peak_memory_mb=c.peak_memory_mb, winner=is_winner,
        best_quality=best is not None and c.name == best.name, status=status,
        diff_vs_best=cmp.diff_vs_best if cmp else None, p_value=cmp.p_value if cmp else None,
        violations=tuple(cmp.violations) if cmp else (),
    )


def _notices(results: Results, study: StudyView | None) -> tuple[str, ...]:
    out = []
    if results.status != "complete":
        out.append(f"This run is {results.status}: the numbers below are what was measured before it stopped.")
    if results.verdict is None and results.candidates:
        out.append("No verdict was reached; the measurements so far are shown.")
    if study is not None and study.interrupted:
        out.append(f"The fine-tuning search was interrupted after {study.counts.get('complete', 0)} finished "
                   f"trial(s); the command advise tune --resume continues it.")
    return tuple(out)


def _headline(results: Results, winner: CandidateResult | None) -> str:
    if results.verdict is not None:
        return results.verdict.headline
    if not results.candidates and results.study is not None:
        best = next((t for t in results.study.trials if t.number == results.study.best_trial), None)
        return (f"Fine-tuning search: trial {best.number} ({best.method}) is the best configuration." if best
                else "Fine-tuning search: no trial has finished yet.")
    if not results.candidates:
        return "No candidate was measured."
    return "No verdict yet: the run stopped before all candidates were compared."


def _q_ci(c: CandidateResult) -> str:
    return f"{fmt_quality(c.quality.mean)} (95% CI {fmt_ci(c.quality.ci_low, c.quality.ci_high)})"


def _recommendation(results, winner, best, rows, study, cons, metric) -> str:
    if winner is None:
        if not results.candidates and study is not None:  # `advise tune` on its own: the study is the result
            if study.best is None:
                return f"The search has not finished a trial yet. {study.summary}"
            text = (f"Use trial {study.best.number}: {study.best.method}"
                    + (f" with {study.best.params}" if study.best.params else "")
                    + f". It reached {fmt_quality(study.best.quality)} on the validation split")
            if study.best_eval is not None:
                text += (f" and {fmt_quality(study.best_eval[0])} on the held-out examples "
                         f"(95% CI {fmt_ci(study.best_eval[1], study.best_eval[2])})")
            return text + (f", and cost {fmt_money(study.best.train_cost_usd)} to train. {study.summary}")
        if not results.candidates:
            return "Nothing was measured, so there is nothing to recommend yet. Run advise run task.yaml."
        top = max(results.candidates, key=lambda c: c.quality.mean)
        return (f"The run stopped before a verdict. So far {top.name} scores best, {_q_ci(top)}, "
                f"but the comparison is incomplete; re-run to get a recommendation.")
    label = METRIC_LABEL.get(metric, metric.replace("_", " "))
    by_name = {r.name: r for r in rows}
    w = by_name[winner.name]
    parts = [ACTION.get(winner.baseline, f"Ship {winner.name}.")]
    sentence = (f"The recommended option, {winner.name}, scores {fmt_quality(winner.quality.mean)} on {label} "
                f"over {winner.quality.n} held-out examples (95% CI {fmt_ci(winner.quality.ci_low, winner.quality.ci_high)})")
    if results.verdict.finetune_wins:
        others = [f"{c.name} ({fmt_quality(c.quality.mean)})" for c in results.candidates if c.baseline != "finetune"]
        if others:
            sentence += ", significantly better than " + _and(others)
    elif best is not None and best.name != winner.name:
        sentence += (f", statistically as good as the best option, {best.name} at {fmt_quality(best.quality.mean)}, "
                     f"and it costs less")
    elif len(results.candidates) > 1:
        sentence += f", the best of the {len(results.candidates)} options measured"
    parts.append(sentence + ".")
    if w.violations or (results.verdict.comparisons and not _adequate(results, winner.name)):
        parts.append("No option that is as good as the best meets your constraints; this is the best one that does.")
    running = (f"At {cons['queries_per_month']:,} queries a month it costs about {fmt_money(w.monthly_cost_usd)} "
               f"a month to run")
    if w.one_off_cost_usd > 0:
        running += f", after a one-off {fmt_money(w.one_off_cost_usd)} to set up"
    parts.append(running + ".")
    ft = [c for c in results.candidates if c.baseline == "finetune"]
    if winner.baseline != "finetune" and ft:
        f = max(ft, key=lambda c: c.quality.mean)
        verdict_ft = by_name[f.name].status
        why = {"significantly worse": "it scored significantly worse",
               "breaks a constraint": "it breaks a constraint"}.get(verdict_ft, "it was not significantly better")
        parts.append(f"Fine-tuning would cost {fmt_money(f.one_off_cost_usd)} up front "
                     f"({fmt_seconds(f.one_off_seconds)} of training) and {fmt_money(by_name[f.name].monthly_cost_usd)} "
                     f"a month to run; it scored {fmt_quality(f.quality.mean)}, so {why} — not worth it here.")
    elif winner.baseline == "finetune":
        ft_sentence = f"The pilot fine-tune took {fmt_seconds(winner.one_off_seconds)} of training"
        if study is not None and study.counts.get("total", 0):
            ft_sentence += (f"; the search over fine-tuning methods ran {study.counts['total']} trials "
                            f"for a further {fmt_money(study.total_train_cost_usd)}")
            if study.best is not None:
                ft_sentence += (f", and its best configuration is trial {study.best.number} "
                                f"({study.best.method}{', ' + study.best.params if study.best.params else ''})")
                if study.best_eval is not None:
                    ft_sentence += f", scoring {fmt_quality(study.best_eval[0])} on the held-out examples"
            if study.interrupted:
                ft_sentence += " (the search was interrupted)"
        parts.append(ft_sentence + ".")
    return " ".join(parts)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _adequate(results: Results, name: str) -> bool:
    cmp = next((c for c in results.verdict.comparisons if c.candidate == name), None)
    return cmp is None or cmp.adequate


def _figures(results, winner, rows, study, cons, metric) -> tuple[Figure, ...]:
    if not rows:
        return ()
    by_name = {r.name: r for r in rows}
    if winner is None:
        top = max(rows, key=lambda r: r.quality)
        return (Figure("Best so far", top.name, top.kind),
                Figure("Quality", fmt_quality(top.quality), f"95% CI {fmt_ci(top.ci_low, top.ci_high)}"))
    w = by_name[winner.name]
    others = [r for r in rows if r.name != w.name]
    runner = max(others, key=lambda r: r.quality) if others else None
    figures = [
        Figure("Recommended", w.kind, w.name),
        Figure(f"Quality ({METRIC_LABEL.get(metric, metric)})", fmt_quality(w.quality),
               f"95% CI {fmt_ci(w.ci_low, w.ci_high)}"
               + (f"; next best {runner.name} {fmt_quality(runner.quality)}" if runner else "")),
        Figure("Running cost", f"{fmt_money(w.monthly_cost_usd)}/month",
               f"at {cons['queries_per_month']:,} queries a month; p95 latency {fmt_ms(w.latency_p95_ms)}"),
    ]
    ft_rows = [r for r in rows if r.baseline == "finetune"]
    if ft_rows:
        f = max(ft_rows, key=lambda r: r.quality)
        cost = f.one_off_cost_usd + (study.total_train_cost_usd if study else 0.0)
        detail = f"pilot {fmt_money(f.one_off_cost_usd)}"
        if study:
            detail += f" + search {fmt_money(study.total_train_cost_usd)} ({study.counts.get('total', 0)} trials)"
        figures.append(Figure("Fine-tuning cost (one-off)", fmt_money(cost), detail))
    else:
        figures.append(Figure("One-off cost", fmt_money(w.one_off_cost_usd), "set-up: indexing or training"))
    return tuple(figures)


# ---------------------------------------------------------------- before / after examples

def _read_predictions(path: Path) -> dict[int, dict]:
    rows = {}
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            rows[int(row.get("index", i))] = row
    return rows


def _examples(results: Results, run_dir: Path, winner: CandidateResult | None) -> tuple[tuple[Example, ...], str]:
    loaded: dict[str, dict[int, dict]] = {}
    missing = []
    for c in results.candidates:
        path = run_dir / c.predictions_file
        try:
            loaded[c.name] = _read_predictions(path)
        except (OSError, ValueError, TypeError):
            missing.append(c.name)
    note = f"Predictions not found for: {', '.join(missing)}." if missing else ""
    if len(loaded) < 2:
        return (), (note + " Before/after examples need the predictions of at least two candidates.").strip()
    names = [c.name for c in results.candidates if c.name in loaded]
    scores_of = {c.name: c.scores for c in results.candidates}
    common = sorted(set.intersection(*(set(rows) for rows in loaded.values())))

    def score(name: str, i: int) -> float:
        value = loaded[name][i].get("score")
        if value is None and i < len(scores_of[name]):
            value = scores_of[name][i]
        return float(value or 0.0)

    focus = winner.name if winner is not None and winner.name in loaded else names[-1]
    better, worse, other = [], [], []
    for i in common:
        s = {n: score(n, i) for n in names}
        spread = max(s.values()) - min(s.values())
        if spread > 0:
            rest = max(v for n, v in s.items() if n != focus)
            (better if s[focus] > rest else worse if s[focus] < rest else other).append((-spread, i))
        elif len({str(loaded[n][i].get("prediction", "")).strip() for n in names}) > 1:
            other.append((0.0, i))
    for group in (better, worse, other):
        group.sort()
    same = not (better or worse or other)
    if same:  # every option answered alike: show a few anyway, so the reader sees what they say
        other = [(0.0, i) for i in common[:3]]
    # Mostly where the recommendation helps, but honestly also where it does worse.
    picked = better[: MAX_EXAMPLES - min(2, len(worse))]
    picked += worse[: MAX_EXAMPLES - len(picked)]
    picked += other[: MAX_EXAMPLES - len(picked)]
    picked_idx = {i for _, i in picked}
    examples = []
    for i in common:
        if i not in picked_idx:
            continue
        s = {n: score(n, i) for n in names}
        first = loaded[names[0]][i]
        top = max(s.values())
        leaders = [n for n in names if s[n] == top]
        if same:
            why = "Every option gives the same answer here."
        elif len(leaders) == len(names):
            why = "All score the same; the answers differ in wording."
        elif focus in leaders:
            why = f"{focus} does better here." if len(leaders) > 1 else f"Only {focus} gets the top score here."
        else:
            why = f"{focus} does worse here than {', '.join(leaders)}."
        examples.append(Example(
            index=i, input=_cut(first.get("input")), reference=_cut(first.get("reference")),
            answers=tuple(Answer(n, _cut(loaded[n][i].get("prediction")), s[n], n == focus) for n in names),
            why=why))
    order = {i: k for k, (_, i) in enumerate(sorted(better) + sorted(worse) + sorted(other))}
    examples.sort(key=lambda e: order.get(e.index, 0))
    if same and not note:
        note = "Every option gave the same answer on every example; the first few are shown."
    return tuple(examples), note


# ---------------------------------------------------------------- the study

def _state(raw: str) -> str:
    s = raw.lower().removeprefix("trialstate.")
    return {"fail": "failed", "failed": "failed"}.get(s, s)


def _trial_quality(t: Trial) -> float | None:
    if t.validation_quality is not None:
        return t.validation_quality
    if t.intermediate:  # a pruned trial: its last reported value
        last = max(t.intermediate, key=lambda k: float(k) if _is_number(k) else 0.0)
        return t.intermediate[last]
    return t.eval_quality


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _trial_row(t: Trial, best: int | None) -> TrialRow:
    return TrialRow(
        number=t.number, state=_state(t.state), method=t.method, params=fmt_params(t.params),
        quality=_trial_quality(t), eval_quality=t.eval_quality, train_cost_usd=t.train_cost_usd,
        train_seconds=t.train_seconds, estimated_train_seconds=t.estimated_train_seconds,
        latency_p95_ms=t.latency_p95_ms, peak_memory_mb=t.peak_memory_mb, trainable_params=t.trainable_params,
        steps=t.steps, pareto=t.pareto, best=best is not None and t.number == best, note=_cut(t.note or ""),
    )


def _study(s: Study) -> StudyView:
    trials = tuple(_trial_row(t, s.best_trial) for t in sorted(s.trials, key=lambda t: t.number))
    counts = {"total": len(trials)}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    complete = [t for t in trials if t.state == "complete" and t.quality is not None]
    top = sorted(complete, key=lambda t: (-t.quality, t.train_cost_usd or 0.0, t.number))[:TOP_TRIALS]
    best = next((t for t in trials if t.best), None)
    if best is not None and best not in top:
        top = [best] + top[: TOP_TRIALS - 1]
    pareto = sorted((t for t in trials if t.pareto), key=lambda t: (t.train_cost_usd or 0.0, -(t.quality or 0.0)))

    history, running = [], None
    for t in trials:
        if t.state == "complete" and t.quality is not None:
            running = t.quality if running is None else max(running, t.quality)
        history.append(HistoryPoint(t.number, t.quality, running, t.state))

    methods: dict[str, dict] = {}
    for t in trials:
        m = methods.setdefault(t.method, {"trials": 0, "complete": 0, "pruned": 0, "failed": 0, "best": None,
                                          "notes": []})
        m["trials"] += 1
        if t.state in ("complete", "pruned", "failed"):
            m[t.state] += 1
        if t.state == "complete" and t.quality is not None:
            m["best"] = t.quality if m["best"] is None else max(m["best"], t.quality)
        if t.note and t.state in ("pruned", "failed"):
            m["notes"].append(f"trial {t.number} {t.state}: {t.note}")
    method_rows = [MethodRow(name, m["trials"], m["complete"], m["pruned"], m["failed"], m["best"], False,
                             "; ".join(m["notes"][:3]))
                   for name, m in sorted(methods.items(), key=lambda kv: -(kv[1]["best"] or -1))]
    method_rows += [MethodRow(name, 0, 0, 0, 0, None, True, reason)
                    for name, reason in s.excluded_methods.items() if name not in methods]

    interrupted = s.status != "complete"
    total_cost = sum(t.train_cost_usd or 0.0 for t in trials)
    total_seconds = sum(t.train_seconds or 0.0 for t in trials)
    summary = (f"{counts['total']} trials: {counts.get('complete', 0)} finished, {counts.get('pruned', 0)} stopped "
               f"early (pruned), {counts.get('failed', 0)} failed"
               + (f", {counts.get('running', 0)} still running" if counts.get("running") else "")
               + f"; {len(s.excluded_methods)} method(s) excluded. "
               + f"Training time {fmt_seconds(total_seconds)}, cost {fmt_money(total_cost)}."
               + (" The search was interrupted." if interrupted else ""))
    best_eval = (s.best_eval.mean, s.best_eval.ci_low, s.best_eval.ci_high, s.best_eval.n) if s.best_eval else None
    return StudyView(
        name=s.study_name, status=s.status, interrupted=interrupted, sampler=s.sampler, pruner=s.pruner,
        storage=s.storage, selection_rule=s.selection_rule, counts=counts, best=best, best_eval=best_eval,
        top_trials=tuple(top), pareto=tuple(pareto), trials=trials, methods=tuple(method_rows),
        importance=tuple(sorted(s.importance.items(), key=lambda kv: -kv[1])),
        history=tuple(history), total_train_cost_usd=total_cost, total_train_seconds=total_seconds, summary=summary,
    )


# ---------------------------------------------------------------- appendix

def _flat(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(d, dict):
        out = []
        for k, v in d.items():
            out += _flat(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(d, (list, tuple)):
        return [(prefix, ", ".join(str(x) for x in d))]
    return [(prefix, "–" if d is None else str(d))]


def _appendix(results: Results, metric: str) -> Appendix:
    import yaml

    from advisor.metrics import METRICS

    data = dict(results.data or {})
    formats = data.pop("formats", {}) or {}
    sizes = data.pop("sizes", {}) or {}
    leakage = data.pop("leakage", None)
    leak_count = leak_examples = None
    if isinstance(leakage, dict):
        leak_count = leakage.get("train_eval_duplicates")
        leak_examples = tuple(_cut(x) for x in leakage.get("examples", []) or [])
    seeds = [("task seed", str(results.task.get("seed", "–")))]
    for source, mapping in (("environment", results.environment),
                            ("pilot", (results.verdict.pilot_config or {}) if results.verdict else {})):
        seeds += [(f"{source}: {k}", v) for k, v in _flat(mapping) if "seed" in k.lower()]
    if results.study is not None:
        seeds.append(("study sampler", results.study.sampler))
    timings = tuple((k, float(v)) for k, v in results.timings.items())
    m = METRICS.get(metric)
    return Appendix(
        task_yaml=yaml.safe_dump(results.task, sort_keys=False, allow_unicode=True, default_flow_style=False),
        data_formats=tuple((str(k), str(v)) for k, v in formats.items()),
        data_sizes=tuple((str(k), int(v)) for k, v in sizes.items()),
        leakage_count=leak_count, leakage_examples=leak_examples or (),
        data_other=tuple(_flat(data)),
        environment=tuple(_flat(results.environment)),
        seeds=tuple(seeds),
        timings=timings, total_seconds=sum(v for _, v in timings),
        rule=results.verdict.rule if results.verdict else "",
        metric=metric, metric_description=m.description if m else "",
        schema_version=results.schema_version, advise_version=results.advise_version, created=results.created,
    )


__all__ = ["Report", "build_report", "report_json", "fmt_quality", "fmt_money", "fmt_ms", "fmt_seconds",
           "fmt_memory", "fmt_ci", "fmt_params"]
