"""``advise run --seeds N``: is the verdict stable?

The measurement is repeated with seeds ``task.seed + 1 … + N-1``: the few-shot demonstrations,
the pilots' training order and initialisation, and the bootstrap resamples all change; the eval
split does not. Candidates whose answers cannot depend on the seed (greedy decoding of a fixed
prompt: zero-shot, RAG) are measured once and reused. The verdict is called *stable* only when
the same candidate wins with every seed; otherwise it says what the outcome depends on.
"""
from __future__ import annotations

import statistics

from foundation.results import SeedRun, Stability

DEPENDS = {"prompt": "which training examples are picked as few-shot demonstrations",
           "finetune": "the pilot's training order and initialisation",
           "finetune_rag": "the FT + RAG pilot's training order and initialisation"}


def seed_run(seed: int, verdict, candidates) -> SeedRun:
    return SeedRun(seed=seed, winner=verdict.winner, recommendation=verdict.recommendation,
                   means={c.name: c.quality.mean for c in candidates})


def summarize_seeds(runs: list[SeedRun], baselines: dict[str, str], min_gain: float) -> Stability:
    """How often each candidate won and the spread of each quality; ``baselines`` maps a candidate
    to the baseline that measured it (what its quality can depend on).

    >>> runs = [SeedRun(seed=s, winner=w, recommendation=w, means={"rag": 0.5, "finetune": f})
    ...         for s, w, f in ((0, "rag", 0.45), (1, "finetune", 0.62), (2, "rag", 0.48))]
    >>> st = summarize_seeds(runs, {"rag": "rag", "finetune": "finetune"}, 0.02)
    >>> st.stable, st.wins
    (False, {'rag': 2, 'finetune': 1})
    """
    wins: dict[str, int] = {}
    for r in runs:
        wins[r.winner] = wins.get(r.winner, 0) + 1
    names = list(runs[0].means)
    spread = {n: [min(r.means[n] for r in runs), statistics.fmean(r.means[n] for r in runs),
                  max(r.means[n] for r in runs)] for n in names}
    stable = len(wins) == 1
    n = len(runs)
    if stable:
        summary = (f"Stable: {runs[0].winner} won with each of {n} seeds (few-shot picks, training order and "
                   "bootstrap changed; the eval split did not).")
    else:
        counts = ", ".join(f"{name} {k} of {n}" for name, k in sorted(wins.items(), key=lambda kv: -kv[1]))
        summary = f"Not stable across {n} seeds: {counts}. " + _depends_on(spread, wins, baselines, min_gain)
    return Stability(seeds=[r.seed for r in runs], runs=runs, wins=wins, spread=spread, stable=stable,
                     summary=summary)


def _depends_on(spread: dict[str, list[float]], wins: dict[str, int], baselines: dict[str, str],
                min_gain: float) -> str:
    moving = [(hi - lo, name) for name, (lo, _, hi) in spread.items() if hi - lo > min_gain / 2]
    if not moving:
        return ("Every quality stayed the same, so the outcome turns on the bootstrap's resamples: the "
                "differences are at the edge of significance; more eval data would settle it.")
    moving.sort(reverse=True)
    parts = []
    for _, name in moving[:2]:
        lo, _, hi = spread[name]
        why = DEPENDS.get(baselines.get(name, ""), "the seed")
        parts.append(f"{name}'s quality ranges {lo:.3f}–{hi:.3f} ({why})")
    return "It depends on " + " and ".join(parts) + "."
