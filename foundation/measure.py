"""Turning a candidate's generations into a CandidateResult: quality with CI, latency, cost, memory."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from foundation.costs import hourly_price
from foundation.metrics import METRICS, metric_options, score_records
from foundation.records import is_preference
from foundation.resources import PeakMemory
from foundation.results import CandidateResult, Latency, Quality, Tokens, TrialConfig
from foundation.stats import bootstrap_ci, percentile


@dataclass
class CandidateRun:
    """Everything a baseline hands over to be measured."""

    name: str
    baseline: str
    description: str
    model: object
    prompts: list[str]
    answer_one: Callable[[int], object]  # answers eval example i alone (retrieval included)
    details: dict = field(default_factory=dict)
    one_off_seconds: float = 0.0
    extra_seconds: float = 0.0  # batch work outside generation, e.g. retrieval for all queries
    config: TrialConfig | None = None  # the fine-tuning configuration that trained ``model``
    model_name: str | None = None  # the compare: entry that answered (None: the task's model)


def measure_candidate(ctx, run: CandidateRun) -> CandidateResult:
    """Generate for every eval example in batches, score, time single queries, price, save predictions."""
    from foundation.generation import generate, time_single_queries

    task, records = ctx.task, ctx.splits.eval
    # One untimed call first: the first generate on a model pays one-off set-up costs that
    # would otherwise be charged to whichever candidate happens to run first.
    generate(run.model, ctx.tokenizer, run.prompts[:1], task.generation, batch_size=1)
    with ctx.progress.task(f"Evaluating {run.name}", total=len(run.prompts)) as advance:
        with PeakMemory(ctx.device) as mem:
            gens = generate(run.model, ctx.tokenizer, run.prompts, task.generation, on_batch=advance)
    scores, extra = candidate_scores(ctx, run, gens.texts)
    note_judge(ctx, run.name, extra)
    run.details.update(extra)
    quality = measure_quality(task, scores)
    with ctx.progress.task(f"Timing {run.name} at batch 1", total=task.generation.latency_queries + 1) as advance:
        def timed(i):
            run.answer_one(i)
            advance()

        lat = time_single_queries(timed, list(range(len(records))), task.generation.latency_queries)
    seconds = gens.seconds + run.extra_seconds
    qps = len(records) / seconds if seconds > 0 else 0.0
    price = hourly_price(task.constraints, ctx.device)
    predictions = getattr(ctx, "out_dir", ctx.run_dir) / "predictions" / f"{run.name}.jsonl"
    write_predictions(predictions, records, gens.texts, scores)
    return CandidateResult(
        name=run.name, baseline=run.baseline, model=run.model_name or ctx.task.model, description=run.description,
        details=run.details,
        quality=quality, scores=scores, config=run.config,
        latency=Latency(p50_ms=percentile(lat, 50), p95_ms=percentile(lat, 95), mean_ms=float(np.mean(lat)), n=len(lat)),
        throughput_qps=qps,
        tokens=Tokens(prompt_mean=float(np.mean(gens.prompt_tokens)), answer_mean=float(np.mean(gens.answer_tokens))),
        one_off_seconds=run.one_off_seconds, one_off_cost_usd=run.one_off_seconds / 3600 * price,
        cost_per_1k_usd=(1000 / qps) / 3600 * price if qps else float("inf"),
        peak_memory_mb=mem.peak_mb, predictions_file=str(predictions.relative_to(ctx.run_dir)),
    )


def candidate_scores(ctx, run: CandidateRun, texts: list[str]) -> tuple[list[float], dict]:
    """Per-example quality and what else the report shows about it.

    On input → output data: the task's metric on the answers, plus the share of answers in the
    metric's expected form (valid JSON, a known label) where the metric says what that is. On
    preference data: preference accuracy, from the candidate's own likelihoods of the chosen and
    rejected answers given its own prompt (``foundation.likelihood``), plus the mean margin; the
    metric of the answers against the chosen ones is a second figure when task.yaml sets one.
    """
    task, records = ctx.task, ctx.splits.eval
    metric = METRICS[task.metric.name]
    extra: dict = {}
    if metric.format_check is not None:
        options = metric_options(task.metric)
        extra["format_share"] = sum(bool(metric.format_check(t, **options)) for t in texts) / max(1, len(texts))
    if not is_preference(records):
        return score_records(task, texts, records, embedder=ctx.embedder if metric.needs_embedder else None,
                             report=extra), extra
    from foundation.likelihood import preference_scores

    scores, margins = preference_scores(run.model, ctx.tokenizer, run.prompts, records)
    extra["preference_margin_mean"] = float(np.mean(margins)) if margins else 0.0
    if "metric" in task.model_fields_set and all(r.label is None or r.label for r in records):
        generated = score_records(task, texts, records, embedder=ctx.embedder if metric.needs_embedder else None)
        q = measure_quality(task, generated)
        extra["generation_metric"] = {"name": metric.name, "label": metric.label, "mean": q.mean,
                                      "ci_low": q.ci_low, "ci_high": q.ci_high}
    return scores, extra


def note_judge(ctx, name: str, extra: dict) -> None:
    """Grades the LLM judge could not read are scored 0 and said in the verdict's cautions."""
    judge = extra.get("judge") or {}
    if judge.get("malformed"):
        ctx.extras.setdefault("not_measured", []).append(
            f"{name}: {judge['malformed']} of {judge['graded']} answers got no readable grade from the judge "
            f"{judge['judge']} after {judge['retries']} retries; they score 0 (see details.judge.malformed_examples).")


def measure_quality(task, scores: list[float]) -> Quality:
    """Mean and bootstrap CI at the task's confidence: every quality figure is made here."""
    mean, lo, hi = bootstrap_ci(scores, task.verdict.confidence, task.verdict.bootstrap_samples, task.seed)
    return Quality(mean=mean, ci_low=lo, ci_high=hi, n=len(scores))


def write_predictions(path: Path, records, predictions: list[str], scores: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i, (r, p, s) in enumerate(zip(records, predictions, scores)):
            row = {"index": i, "input": r.input, "reference": r.output, "prediction": p, "score": s}
            if r.alternatives:
                row["also_accepted"] = r.alternatives
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
