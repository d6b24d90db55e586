"""The verdict's cautions: what the numbers cannot say on their own, each shown only where the
data shows it. The seeds' criteria: knowledge that changes often (a fine-tuned model goes
stale), a fine-tune cut short by its time budget or still improving when the pilot stopped,
answers not in the expected form, latency close to (or without) a limit, and the API bill of a
long prompt at the stated volume.
"""
from __future__ import annotations

from baselines.base import is_fine_tuned
from foundation.costs import fmt_money
from foundation.metrics import METRICS

STALE = {"weekly", "daily", "monthly"}
FORMAT_GAP = 0.10  # shares of well-formed answers this far apart are worth a sentence
LATENCY_MARGIN = 0.8  # a p95 above this share of the limit is close to it
LONG_PROMPT = 2.0  # a prompt this many times the shortest candidate's is a long one


def cautions(winner, candidates, task) -> list[str]:
    out = []
    changes = task.constraints.knowledge_changes
    if is_fine_tuned(winner) and changes in STALE:
        out.append(f"The knowledge changes {changes}: a fine-tuned model freezes it and goes stale. "
                   "Re-index with RAG instead, or combine FT + RAG so facts come from retrieval.")
    if is_fine_tuned(winner) and winner.baseline != "finetune_rag" and any(c.baseline == "rag" for c in candidates):
        out.append("Fine-tuning and RAG combine: gains from both add up in published studies.")
    out += cut_short(winner, candidates, task)
    out += still_improving(winner, candidates)
    out += format_consistency(winner, candidates, task)
    out += latency(winner, candidates, task.constraints)
    out += prompt_bill(winner, candidates, task.constraints)
    if winner.quality.n < 30:
        out.append(f"Only {winner.quality.n} eval examples: confidence intervals are wide; more held-out data "
                   "would sharpen the verdict.")
    if winner.quality.mean < 0.5:
        out.append(f"Even the winner scores only {winner.quality.mean:.2f}: consider a larger base model.")
    return out


def cut_short(winner, candidates, task) -> list[str]:
    """Fine-tunes whose pilot stopped before its planned steps (the time budget, a safety net, ran out)."""
    out = []
    for c in candidates:
        reason, planned = c.details.get("cut_short"), c.details.get("planned_steps")
        if not reason or not planned:
            continue
        then = "a full run would likely score higher" if c is winner else "a full run may change this verdict"
        out.append(f"{c.name}'s fine-tune was {reason}: {c.details['steps'] / planned:.0%} of the training planned "
                   f"(baselines.finetune.time_budget_s is {task.baselines.finetune.time_budget_s:g} s). Its quality "
                   f"is that of the shorter run; {then}.")
    return out


def still_improving(winner, candidates) -> list[str]:
    """Fine-tunes whose validation curve still rose when the pilot stopped."""
    out = []
    for c in candidates:
        curve = c.details.get("learning_curve") or {}
        if not curve.get("still_improving"):
            continue
        steps, values = curve["steps"], curve["validation"]
        cut = steps[0] + (steps[-1] - steps[0]) * 2 / 3 if len(steps) > 2 else steps[0]
        i = max(j for j, s in enumerate(steps) if s <= cut)
        then = ("a longer run would likely do better still" if c is winner
                else "a longer run may change this verdict")
        out.append(f"{c.name} was still improving when its pilot stopped: validation {values[i]:.2f} → "
                   f"{values[-1]:.2f} over steps {steps[i]}–{steps[-1]} ({curve.get('stopped', '')}); {then}.")
    return out


def format_consistency(winner, candidates, task) -> list[str]:
    """The share of answers in the metric's expected form (valid JSON, a known label), when it differs."""
    shares = {c.name: c.details["format_share"] for c in candidates if "format_share" in c.details}
    if not shares or winner.name not in shares:
        return []
    if shares[winner.name] >= 1 - FORMAT_GAP / 2 and max(shares.values()) - min(shares.values()) < FORMAT_GAP:
        return []
    form = {"json": "a JSON object", "accuracy": "one of metric.labels"}.get(task.metric.name, "the expected form")
    listed = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    return [f"Answers in {form} ({METRICS[task.metric.name].label}): {listed}. A format the model does not "
            "keep reliably needs a parser or a fallback in production, whatever the mean score."]


def latency(winner, candidates, constraints) -> list[str]:
    limit = constraints.latency_p95_ms
    p95 = winner.latency.p95_ms
    if limit is not None:
        if p95 > LATENCY_MARGIN * limit:
            return [f"{winner.name}'s p95 latency {p95:.0f} ms is within {1 - p95 / limit:.0%} of the "
                    f"{limit:.0f} ms limit: under production load or on other hardware it may break it."]
        return []
    fastest = min(candidates, key=lambda c: c.latency.p95_ms)
    if fastest is not winner and p95 >= 2 * fastest.latency.p95_ms:
        return [f"No latency limit is set (constraints.latency_p95_ms): {winner.name} answers in p95 {p95:.0f} ms, "
                f"{p95 / fastest.latency.p95_ms:.1f}× {fastest.name}'s {fastest.latency.p95_ms:.0f} ms."]
    return []


def prompt_bill(winner, candidates, constraints) -> list[str]:
    """What a long prompt sends at the stated volume, priced when the API price is given."""
    shortest = min(candidates, key=lambda c: c.tokens.prompt_mean)
    tokens = winner.tokens.prompt_mean
    if shortest is winner or tokens < LONG_PROMPT * max(1.0, shortest.tokens.prompt_mean):
        return []
    monthly = tokens * constraints.queries_per_month
    text = (f"{winner.name} sends {tokens:.0f} prompt tokens a query ({shortest.name}: "
            f"{shortest.tokens.prompt_mean:.0f}): {monthly / 1e6:,.1f} M tokens a month at "
            f"{constraints.queries_per_month:,} queries")
    price = constraints.api_price_per_million_tokens
    if price is not None:
        extra = (tokens - shortest.tokens.prompt_mean) * constraints.queries_per_month / 1e6 * price
        text += (f"; on an API at {fmt_money(price)} per million prompt tokens that is "
                 f"{fmt_money(monthly / 1e6 * price)} a month, {fmt_money(extra)} more than {shortest.name}")
    else:
        text += "; on a paid API that bill grows with volume (set constraints.api_price_per_million_tokens to price it)"
    return [text + "."]
