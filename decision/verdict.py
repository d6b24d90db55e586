"""The verdict: which candidate to ship, decided from the measurements.

The rule (docs/verdict.md; in short in README.md):

1. Every candidate is scored per example on the same eval split, so comparisons are paired.
2. Best = highest mean quality. A candidate is *adequate* unless a paired bootstrap shows it
   significantly worse than the best (the CI of the difference lies above 0), or it is within
   ``min_gain`` of the best.
3. Candidates that break a constraint (latency p95, one-off budget) are dropped.
4. Fine-tuning is the last resort: a fine-tuned candidate stays in the running only when every
   prompt and RAG candidate that meets the constraints is inadequate. Its per-query compute can
   be lower than a long few-shot or RAG prompt's, but a cost model of measured compute does not
   see what a custom model costs to host, retrain and maintain, so a lower compute bill alone
   never makes it win.
5. Among the remaining adequate candidates the lowest total cost over the horizon wins (one-off +
   cost per query × queries per month × months). Costs within 25% of the cheapest count as equal
   (they come from measured time, and timing noise on a shared machine is of that order), and
   ties go to the simplest: prompt < rag < finetune.
So fine-tuning wins only when it is significantly better, by more than ``min_gain``, than every
prompt and RAG candidate that meets the constraints.
"""
from __future__ import annotations

from decision.cautions import cautions as verdict_cautions
from baselines.base import is_fine_tuned, load_all, simplicity
from foundation.costs import cost_rank, fmt_money, monthly_cost, total_cost
from foundation.results import CandidateResult, Comparison, Verdict
from foundation.stats import judge

RULE = ("adequate = not significantly worse than the best (paired bootstrap, {conf:.0%}) or within "
        "{min_gain:g} of it; drop constraint violations; fine-tuning only when no prompt or RAG candidate is "
        "adequate; cheapest total cost over {horizon:g} months at {volume:,} queries/month wins; costs within "
        "25% tie and go to the simplest (prompt < rag < finetune)")
COST_TIE = 0.25


def violations(c: CandidateResult, constraints) -> list[str]:
    out = []
    if constraints.latency_p95_ms is not None and c.latency.p95_ms > constraints.latency_p95_ms:
        out.append(f"latency p95 {c.latency.p95_ms:.0f} ms > limit {constraints.latency_p95_ms:.0f} ms")
    if constraints.budget_usd is not None and c.one_off_cost_usd > constraints.budget_usd:
        out.append(f"one-off cost {fmt_money(c.one_off_cost_usd)} > budget {fmt_money(constraints.budget_usd)}")
    return out


def decide(candidates: list[CandidateResult], task) -> Verdict:
    """Apply the rule to measured candidates (all scored on the same eval examples)."""
    if not candidates:
        raise ValueError("no candidates to decide between")
    vc, cons = task.verdict, task.constraints
    best = max(candidates, key=lambda c: (c.quality.mean, -simplicity(c)))
    comparisons: dict[str, Comparison] = {}
    for c in candidates:
        if c is best:
            test = {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0, "significantly_worse": False,
                    "adequate": True}
        else:
            test = judge(best.scores, c.scores, vc, task.seed)
        comparisons[c.name] = Comparison(
            candidate=c.name, diff_vs_best=test["diff"], diff_ci_low=test["ci_low"], diff_ci_high=test["ci_high"],
            p_value=test["p_value"], significantly_worse=test["significantly_worse"], adequate=test["adequate"],
            violations=violations(c, cons), total_cost_usd=total_cost(c, cons),
        )
    eligible = [c for c in candidates if comparisons[c.name].adequate and not comparisons[c.name].violations]
    # Fine-tuning is the last resort: it competes only when no prompt or RAG candidate is adequate.
    passed_over: set[str] = set()
    if any(not is_fine_tuned(c) for c in eligible):
        passed_over = {c.name for c in eligible if is_fine_tuned(c)}
        eligible = [c for c in eligible if c.name not in passed_over]
    fallback = not eligible
    if fallback:  # nothing adequate fits the constraints: say so, and pick the best that fits at all
        eligible = [c for c in candidates if not comparisons[c.name].violations] or list(candidates)
        eligible = [max(eligible, key=lambda c: c.quality.mean)]
    # An unpriced endpoint (NaN) ranks after every priced candidate: its cost is unknown, not zero.
    cheapest = min(cost_rank(comparisons[c.name].total_cost_usd) for c in eligible)
    tied = [c for c in eligible if cost_rank(comparisons[c.name].total_cost_usd) <= cheapest * (1 + COST_TIE) + 1e-9]
    winner = min(tied, key=lambda c: (simplicity(c), cost_rank(comparisons[c.name].total_cost_usd), -c.quality.mean))

    # Passed-over fine-tunes that would have cost less than the winner: the verdict says so.
    cheaper_ft = {n for n in passed_over
                  if cost_rank(comparisons[n].total_cost_usd) < cost_rank(comparisons[winner.name].total_cost_usd)}
    reasons = _reasons(winner, best, candidates, comparisons, task, fallback, passed_over, cheaper_ft)
    cautions = verdict_cautions(winner, candidates, task)
    ft_wins = is_fine_tuned(winner)
    headline = _headline(winner, best, ft_wins, cheaper_ft)
    return Verdict(
        recommendation=winner.baseline, winner=winner.name, best_quality=best.name, finetune_wins=ft_wins,
        headline=headline, reasons=reasons, cautions=cautions, comparisons=list(comparisons.values()),
        rule=RULE.format(conf=vc.confidence, min_gain=vc.min_gain, horizon=cons.horizon_months,
                         volume=cons.queries_per_month),
    )


def _q(c: CandidateResult, confidence: float) -> str:
    return f"{c.quality.mean:.3f} ({confidence:.0%} CI {c.quality.ci_low:.3f}–{c.quality.ci_high:.3f})"


def _trained(c: CandidateResult) -> str:
    """What a fine-tuned candidate's pilot ran: "SFT" or "SFT then DPO" (its configuration's objective)."""
    stages = c.details.get("stages") or ([c.config.objective] if c.config else ["sft"])
    return " then ".join((s["name"] if isinstance(s, dict) else str(s)).upper() for s in stages)


def _quality_name(task, candidates) -> str:
    """What the quality figures measure: the task's metric, or preference accuracy on preference data."""
    if candidates and "preference_margin_mean" in candidates[0].details:
        return "preference accuracy on chosen/rejected pairs"
    return task.metric.name


def _headline(winner, best, ft_wins, cheaper_ft=()) -> str:
    entry = load_all().get(winner.baseline)
    kind = entry.headline if entry is not None else f"Use {winner.name}"
    if ft_wins:
        return f"{kind}: {winner.name} is significantly better than every prompt and RAG option."
    if cheaper_ft:
        return (f"{kind}: {winner.name} is statistically as good as the best, and fine-tuning is worth "
                "it only for a significant gain.")
    if winner is best:
        return f"{kind}: {winner.name} has the best quality and the lowest total cost among adequate options."
    return f"{kind}: {winner.name} is statistically as good as the best ({best.name}) and costs less."


def _reasons(winner, best, candidates, comparisons, task, fallback, passed_over=(), cheaper_ft=()) -> list[str]:
    cons, conf = task.constraints, task.verdict.confidence
    out = [f"{winner.name} scores {_q(winner, conf)} on {winner.quality.n} held-out examples "
           f"({_quality_name(task, candidates)})" + (f"; it was trained with {_trained(winner)}."
                                                     if is_fine_tuned(winner) else ".")]
    if winner is not best:
        cmp = comparisons[winner.name]
        out.append(f"The best, {best.name}, scores {_q(best, conf)}; the difference {cmp.diff_vs_best:+.3f} "
                   f"({conf:.0%} CI {cmp.diff_ci_low:+.3f} to {cmp.diff_ci_high:+.3f}) is "
                   + ("within the min_gain of {:g}.".format(task.verdict.min_gain) if cmp.significantly_worse
                      else "not significant."))
        if comparisons[best.name].violations:
            out.append(f"{best.name} breaks a constraint: {'; '.join(comparisons[best.name].violations)}.")
    for c in candidates:
        if c is winner or c is best:
            continue
        cmp = comparisons[c.name]
        why = "significantly worse" if not cmp.adequate else (
            "breaks a constraint" if cmp.violations else
            "adequate, but not significantly better than the prompt and RAG options" if c.name in passed_over
            else "adequate but costs more")
        out.append(f"{c.name}: {c.quality.mean:.3f}, {why} (difference to best {cmp.diff_vs_best:+.3f}, "
                   f"p={cmp.p_value:.3f})" + (f"; {'; '.join(cmp.violations)}" if cmp.violations else "") + ".")
    if not is_fine_tuned(winner):
        for c in candidates:
            if is_fine_tuned(c):
                out.append(f"Fine-tuning ({c.name}, {_trained(c)}) would cost {fmt_money(c.one_off_cost_usd)} one-off "
                           f"({c.one_off_seconds:.0f} s of training) for a quality of {c.quality.mean:.3f}.")
                if c.name in cheaper_ft:
                    out.append(f"{c.name} would need less compute over {cons.horizon_months:g} months "
                               f"({fmt_money(comparisons[c.name].total_cost_usd)} vs "
                               f"{fmt_money(comparisons[winner.name].total_cost_usd)}: a shorter prompt), but brings "
                               "no significant quality gain; hosting and retraining a custom model are not in that figure.")
    out.extend(_across_models(winner, candidates, comparisons, cons))
    if winner.cost_per_1k_usd != winner.cost_per_1k_usd:  # NaN: an endpoint without prices
        out.append(f"{winner.name} is unpriced: its compare: entry gives no price_per_million_input/output, so its "
                   "cost is unknown (not zero).")
    out.append(f"At {cons.queries_per_month:,} queries/month {winner.name} costs "
               f"{fmt_money(monthly_cost(winner.cost_per_1k_usd, cons))}/month "
               f"({fmt_money(winner.cost_per_1k_usd)} per 1,000 queries, p95 latency {winner.latency.p95_ms:.0f} ms), "
               f"{fmt_money(comparisons[winner.name].total_cost_usd)} over {cons.horizon_months:g} months.")
    if fallback:
        out.append("No candidate that is statistically as good as the best meets the constraints; "
                   "this is the best candidate that does. Consider relaxing the constraints.")
    return out


def _across_models(winner, candidates, comparisons, cons) -> list[str]:
    """The comparison a team brings: the winner against the best candidate of each other model
    (``compare:`` entries, or the task's model when a compared one wins), with the quality
    difference, its p and both monthly bills."""
    def month(c):
        cost = monthly_cost(c.cost_per_1k_usd, cons)
        return "is unpriced" if cost != cost else f"costs {fmt_money(cost)}/month"

    out, seen = [], {winner.model}
    for c in sorted(candidates, key=lambda c: -c.quality.mean):
        if c.model in seen:
            continue
        seen.add(c.model)
        out.append(f"Across models: {winner.name} scores {winner.quality.mean - c.quality.mean:+.3f} against {c.name} "
                   f"(p={comparisons[c.name].p_value:.3f} that the best is not better than {c.name}); "
                   f"{winner.name} {month(winner)}, {c.name} {month(c)} at {cons.queries_per_month:,} queries/month.")
    return out
