"""Build a report once from ``results.json``; the terminal and the HTML file render it.

``build_report`` is a pure function of the results and the run directory (it only reads the
predictions files the results name). The view model is in ``reports.view``, numbers and texts
are formatted by ``reports.format``, the words by ``reports.prose``, the examples, the study
and the appendix by modules of their own.

>>> from foundation.results import Results
>>> report = build_report(Results(advise_version="0", created="2026-01-01", task={"name": "t"},
...                               environment={}, data={}, candidates=[]), run_dir=".")
>>> report.headline
'No candidate was measured.'
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from baselines.base import load_all
from foundation.config import ConstraintsConfig, VerdictConfig
from foundation.costs import fmt_money, monthly_cost, total_cost
from foundation.results import CandidateResult, Results
from reports import prose
from reports.appendix import appendix
from reports.examples import pick_examples
from reports.format import ci_label
from reports.studyview import study_view
from reports.view import CandidateRow, CurveView, QualityCostPoint, Report, StabilityRow, StabilityView

# On preference data every candidate is scored by preference accuracy (foundation.likelihood).
PREFERENCE_METRIC = {"preference": "preference_accuracy", "unpaired": "preference_sign_accuracy"}


def build_report(results: Results, run_dir: str | Path | None) -> Report:
    """Turn results (and the predictions files in ``run_dir``) into a :class:`Report`.

    With ``run_dir=None`` the predictions are not read and the report has no examples.
    """
    task = results.task or {}
    cons = _section(ConstraintsConfig, task.get("constraints"))
    confidence = _section(VerdictConfig, task.get("verdict")).confidence
    ci = ci_label(confidence)
    kind = str((results.data or {}).get("kind", "sft"))
    metric = PREFERENCE_METRIC.get(kind) or str((task.get("metric") or {}).get("name", "score"))
    verdict = results.verdict
    comparisons = {c.candidate: c for c in verdict.comparisons} if verdict else {}
    winner = _find(results, verdict.winner) if verdict else None
    best = _find(results, verdict.best_quality) if verdict else None

    rows = tuple(_row(c, comparisons.get(c.name), winner, best, cons) for c in results.candidates)
    study = study_view(results.study) if results.study else None
    if study is not None:
        study = replace(study, knowledge=" ".join(filter(None, (prose.knowledge_injection(results),
                                                                prose.reward_model_line(results.study)))))
    examples, examples_note = pick_examples(results, Path(run_dir), winner) if run_dir is not None else ((), "")
    name = str(task.get("name", "run"))
    return Report(
        title=f"advise: {name}",
        task_name=name,
        created=results.created,
        status=results.status,
        confidence=confidence,
        notices=prose.notices(results, study),
        headline=prose.headline(results),
        recommendation=prose.recommendation(results, winner, best, rows, study, cons, metric, ci),
        winner=winner.name if winner else None,
        winner_kind=next((r.kind for r in rows if r.winner), None),
        reasons=tuple(verdict.reasons) if verdict else (),
        cautions=tuple(verdict.cautions) if verdict else (),
        figures=prose.figures(results, winner, rows, study, cons, metric, ci),
        metric=metric,
        metric_label=prose.metric_label(metric),
        queries_per_month=cons.queries_per_month,
        horizon_months=cons.horizon_months,
        rows=rows,
        quality_cost=tuple(QualityCostPoint(r.name, r.total_cost_usd, r.quality, r.ci_low, r.ci_high, r.winner)
                           for r in rows),
        examples=examples,
        examples_differ=any(len({a.prediction.strip() for a in e.answers}) > 1 for e in examples),
        examples_note=examples_note,
        study=study,
        appendix=appendix(results, metric),
        curves=curve_views(results),
        stability=stability_view(results),
        data_kind=kind,
    )


def curve_views(results: Results) -> tuple[CurveView, ...]:
    out = []
    for c in results.candidates:
        curve = c.details.get("learning_curve") or {}
        if curve.get("steps"):
            out.append(CurveView(c.name, tuple(zip(curve["steps"], curve["validation"])),
                                 bool(curve.get("still_improving")), int(curve.get("extended_steps", 0)),
                                 str(curve.get("stopped", "")), str(c.details.get("cut_short") or "")))
    return tuple(out)


def stability_view(results: Results) -> StabilityView | None:
    st = results.stability
    if st is None:
        return None
    rows = tuple(StabilityRow(name, st.wins.get(name, 0), *st.spread[name]) for name in st.spread)
    return StabilityView(tuple(st.seeds), st.stable, st.summary, tuple(r.winner for r in st.runs), rows)


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
        "confidence": report.confidence,
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


def _section(model, raw):
    """A task section from results.json with the config's defaults, read defensively: an older or
    hand-edited file falls back to the default of each key it gets wrong."""
    raw = raw if isinstance(raw, dict) else {}
    try:
        return model.model_validate(raw)
    except Exception:
        good = {}
        for key, value in raw.items():
            try:
                model.model_validate({key: value})
                good[key] = value
            except Exception:
                continue
        return model.model_validate(good)


def _row(c: CandidateResult, cmp, winner, best, cons) -> CandidateRow:
    entry = load_all().get(c.baseline)
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
        name=c.name, baseline=c.baseline, kind=entry.kind if entry else c.baseline,
        fine_tuned=entry.fine_tuned if entry else c.config is not None, description=c.description,
        quality=c.quality.mean, ci_low=c.quality.ci_low, ci_high=c.quality.ci_high, n=c.quality.n,
        latency_p50_ms=c.latency.p50_ms, latency_p95_ms=c.latency.p95_ms, throughput_qps=c.throughput_qps,
        tokens_per_query=c.tokens.prompt_mean + c.tokens.answer_mean,
        cost_per_1k_usd=c.cost_per_1k_usd, monthly_cost_usd=monthly_cost(c.cost_per_1k_usd, cons),
        one_off_cost_usd=c.one_off_cost_usd, one_off_seconds=c.one_off_seconds,
        total_cost_usd=cmp.total_cost_usd if cmp is not None else total_cost(c, cons),
        peak_memory_mb=c.peak_memory_mb, winner=is_winner,
        best_quality=best is not None and c.name == best.name, status=status,
        diff_vs_best=cmp.diff_vs_best if cmp else None, p_value=cmp.p_value if cmp else None,
        violations=tuple(cmp.violations) if cmp else (),
        format_share=c.details.get("format_share"), second_metric=_second_metric(c),
        paid_by_measurement=paid_by_measurement(c),
    )


def paid_by_measurement(c: CandidateResult) -> str:
    """The judge's grading and the distillation teacher's answers, with what the API billed for them:
    costs of measuring (and, for distillation, of training data) that no per-query figure shows.

    >>> c = CandidateResult.model_validate({"name": "rag", "baseline": "rag", "description": "", "quality":
    ...     {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 2}, "scores": [0, 1], "latency": {"p50_ms": 1,
    ...     "p95_ms": 1, "mean_ms": 1, "n": 1}, "throughput_qps": 1, "tokens": {"prompt_mean": 1, "answer_mean": 1},
    ...     "cost_per_1k_usd": 0, "peak_memory_mb": 1, "predictions_file": "p.jsonl", "details": {"judge":
    ...     {"judge": "big", "graded": 48, "cached": 8, "malformed": 1, "prompt_tokens": 9000,
    ...      "completion_tokens": 120, "cost_usd": None}}})
    >>> paid_by_measurement(c)
    'graded by the judge big: 48 grades (8 from the cache, 1 unreadable, scored 0), 9,120 billed tokens, unpriced (no prices in compare:)'
    """
    parts = []
    j = c.details.get("judge")
    if isinstance(j, dict):
        parts.append(f"graded by the judge {j.get('judge')}: {j.get('graded', 0)} grades ({j.get('cached', 0)} from the "
                     f"cache, {j.get('malformed', 0)} unreadable, scored 0), "
                     f"{(j.get('prompt_tokens') or 0) + (j.get('completion_tokens') or 0):,} billed tokens, "
                     + _billed(j.get("cost_usd")))
    d = c.details.get("distillation")
    if isinstance(d, dict):
        parts.append(f"trained on {d.get('answers', 0)} answers written by {d.get('teacher')} ({d.get('from_cache', 0)} "
                     f"from the cache), {(d.get('prompt_tokens') or 0) + (d.get('completion_tokens') or 0):,} billed "
                     f"tokens, " + _billed(d.get("cost_usd")) + (" (in its one-off cost)" if d.get("cost_usd") else ""))
    return "; ".join(parts)


def _billed(cost) -> str:
    return "unpriced (no prices in compare:)" if cost is None else fmt_money(cost)


def _second_metric(c: CandidateResult) -> str:
    g = c.details.get("generation_metric")
    return f"{g['label']} of the answers vs the chosen ones: {g['mean']:.3f}" if isinstance(g, dict) else ""
