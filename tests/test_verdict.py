"""The verdict rule on constructed measurements where the right answer is known."""
import numpy as np
import pytest

from foundation.config import TaskConfig
from foundation.results import CandidateResult, Latency, Quality, Tokens
from foundation.stats import bootstrap_ci, paired_bootstrap
from decision.verdict import decide


def cand(name, baseline, scores, *, p95=100.0, per_1k=0.01, one_off=0.0):
    m, lo, hi = bootstrap_ci(scores)
    return CandidateResult(
        name=name, baseline=baseline, description=name, quality=Quality(mean=m, ci_low=lo, ci_high=hi, n=len(scores)),
        scores=list(map(float, scores)), latency=Latency(p50_ms=p95 / 2, p95_ms=p95, mean_ms=p95 / 2, n=5),
        throughput_qps=10, tokens=Tokens(prompt_mean=50, answer_mean=5), one_off_cost_usd=one_off,
        one_off_seconds=one_off * 36000, cost_per_1k_usd=per_1k, peak_memory_mb=500, predictions_file="p.jsonl")


def task(**constraints):
    return TaskConfig.model_validate({"name": "t", "data": {"train": "a", "eval": "b"}, "constraints": constraints})


def scores(rate, n=60, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(n) < rate).astype(float)


def test_finetune_wins_only_when_significantly_better_than_every_cheaper_option():
    c = [cand("prompt-zero-shot", "prompt", scores(0.2, seed=1)), cand("rag", "rag", scores(0.25, seed=2)),
         cand("finetune", "finetune", scores(0.9, seed=3), one_off=0.5)]
    v = decide(c, task())
    assert v.recommendation == "finetune" and v.finetune_wins
    assert all(x.significantly_worse for x in v.comparisons if x.candidate != "finetune")


def test_a_small_insignificant_gain_goes_to_the_cheaper_option():
    base = scores(0.6, seed=4)
    better = base.copy()
    better[:2] = 1.0  # at most two more right answers out of 60
    c = [cand("prompt-zero-shot", "prompt", base), cand("finetune", "finetune", better, one_off=0.5)]
    v = decide(c, task())
    assert v.recommendation == "prompt" and not v.finetune_wins
    assert v.best_quality == "finetune" and "costs less" in v.headline


def test_significant_but_smaller_than_min_gain_is_a_tie():
    base = np.zeros(400)
    better = base.copy()
    better[:6] = 1.0  # +0.015 on every resample that draws these: significant, yet below min_gain 0.02
    c = [cand("prompt-zero-shot", "prompt", base), cand("finetune", "finetune", better)]
    v = decide(c, task())
    cmp = {x.candidate: x for x in v.comparisons}
    assert cmp["prompt-zero-shot"].significantly_worse and cmp["prompt-zero-shot"].adequate
    assert v.recommendation == "prompt"


def test_constraints_drop_candidates_and_the_reason_is_stated():
    c = [cand("prompt-zero-shot", "prompt", scores(0.8, seed=5), p95=5000),
         cand("rag", "rag", scores(0.8, seed=5), p95=300, per_1k=0.02)]
    v = decide(c, task(latency_p95_ms=1000))
    assert v.recommendation == "rag"
    cmp = {x.candidate: x for x in v.comparisons}
    assert "latency p95" in cmp["prompt-zero-shot"].violations[0]
    assert any("breaks a constraint" in r for r in v.reasons)


def test_budget_constraint_blocks_finetune():
    c = [cand("prompt-zero-shot", "prompt", scores(0.1, seed=6)), cand("finetune", "finetune", scores(0.9, seed=7), one_off=50)]
    v = decide(c, task(budget_usd=10))
    assert v.recommendation == "prompt"
    assert any("constraints" in r for r in v.reasons)


def test_ties_go_to_the_simplest_and_costs_decide_among_adequate():
    same = scores(0.7, seed=8)
    c = [cand("finetune", "finetune", same), cand("rag", "rag", same), cand("prompt-zero-shot", "prompt", same)]
    assert decide(c, task()).winner == "prompt-zero-shot"
    c = [cand("rag", "rag", same, per_1k=0.01), cand("prompt-zero-shot", "prompt", same, per_1k=0.05)]
    assert decide(c, task()).winner == "rag"  # same quality, rag 5x cheaper per query


def test_stale_knowledge_caution_when_finetune_wins():
    c = [cand("prompt-zero-shot", "prompt", scores(0.1, seed=9)), cand("rag", "rag", scores(0.1, seed=10)),
         cand("finetune", "finetune", scores(0.95, seed=11))]
    v = decide(c, task(knowledge_changes="weekly"))
    assert v.finetune_wins and any("stale" in x for x in v.cautions) and any("FT + RAG" in x for x in v.cautions)


def test_paired_bootstrap_is_seeded_and_paired():
    a, b = scores(0.6, seed=12), scores(0.4, seed=13)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:-1])


def test_finetune_that_is_only_cheaper_does_not_win():
    """A fine-tune with a short prompt can need less compute per query than a few-shot or RAG
    prompt; at equal quality the prompt or RAG option still wins (fine-tuning is the last resort)."""
    same = scores(0.8, seed=6)
    c = [cand("prompt-zero-shot", "prompt", scores(0.1, seed=7), per_1k=0.001),
         cand("rag", "rag", same, per_1k=0.02),
         cand("finetune", "finetune", same, per_1k=0.005, one_off=0.01)]
    v = decide(c, task())
    cmp = {x.candidate: x for x in v.comparisons}
    assert cmp["finetune"].adequate and cmp["finetune"].total_cost_usd < cmp["rag"].total_cost_usd
    assert v.recommendation == "rag" and not v.finetune_wins
    assert any("no significant quality gain" in r for r in v.reasons)
    assert "significant gain" in v.headline


def test_finetune_competes_on_cost_when_no_other_option_is_adequate_or_allowed():
    c = [cand("prompt-zero-shot", "prompt", scores(0.8, seed=8), p95=5000),
         cand("finetune", "finetune", scores(0.8, seed=8), p95=200, one_off=0.01)]
    v = decide(c, task(latency_p95_ms=1000))
    assert v.recommendation == "finetune"
