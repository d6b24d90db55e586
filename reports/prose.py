"""The report's words: notices, the headline, the one-paragraph recommendation and the key figures.
Every interval is labelled at the task's confidence level (``ci``, e.g. "95% CI")."""
from __future__ import annotations

from pathlib import Path

from baselines.base import load_all
from foundation.metrics import METRICS
from foundation.results import CandidateResult, Results
from reports.format import fmt_ci, fmt_money, fmt_ms, fmt_quality, fmt_seconds
from reports.view import Figure, StudyView


PREFERENCE_LABELS = {  # preference data: quality is a likelihood comparison, not a metric of an answer
    "preference_accuracy": "preference accuracy",  # the chosen answer more likely than the rejected one
    "preference_sign_accuracy": "preference accuracy (unpaired)",  # desirable answers above the typical one
}


def metric_label(metric: str) -> str:
    """What a reader calls the metric ("exact match"), from the metric registry."""
    if metric in PREFERENCE_LABELS:
        return PREFERENCE_LABELS[metric]
    entry = METRICS.get(metric)
    return entry.label if entry is not None else metric.replace("_", " ")


def notices(results: Results, study: StudyView | None) -> tuple[str, ...]:
    """What a reader must see before the numbers: an interrupted run, a missing verdict."""
    out = []
    if results.status != "complete":
        out.append(f"This run is {results.status}: the numbers below are what was measured before it stopped.")
    if results.verdict is None and results.candidates:
        out.append("No verdict was reached; the measurements so far are shown.")
    if study is not None and study.interrupted:
        out.append(f"The fine-tuning search was interrupted after {study.counts.get('complete', 0)} finished "
                   f"trial(s); the command advise tune --resume continues it.")
    return tuple(out)


def headline(results: Results) -> str:
    if results.verdict is not None:
        return results.verdict.headline
    if not results.candidates and results.study is not None:
        best = next((t for t in results.study.trials if t.number == results.study.best_trial), None)
        return (f"Fine-tuning search: trial {best.number} ({best.method}) is the best configuration." if best
                else "Fine-tuning search: no trial has finished yet.")
    if not results.candidates:
        return "No candidate was measured."
    return "No verdict yet: the run stopped before all candidates were compared."


def _q_ci(c: CandidateResult, ci: str) -> str:
    return f"{fmt_quality(c.quality.mean)} ({ci} {fmt_ci(c.quality.ci_low, c.quality.ci_high)})"


def recommendation(results, winner, best, rows, study, cons, metric: str, ci: str) -> str:
    """The answer for a manager in one paragraph: what to ship, why, what it costs, and what
    fine-tuning costs or would cost."""
    if winner is None:
        return _without_verdict(results, study, ci)
    label = metric_label(metric)
    by_name = {r.name: r for r in rows}
    w = by_name[winner.name]
    entry = load_all().get(winner.baseline)
    parts = [entry.action if entry is not None else f"Ship {winner.name}."]
    sentence = (f"The recommended option, {winner.name}, scores {fmt_quality(winner.quality.mean)} on {label} "
                f"over {winner.quality.n} held-out examples ({ci} {fmt_ci(winner.quality.ci_low, winner.quality.ci_high)})")
    if results.verdict.finetune_wins:
        others = [f"{c.name} ({fmt_quality(c.quality.mean)})" for c in results.candidates if not by_name[c.name].fine_tuned]
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
    running = (f"At {cons.queries_per_month:,} queries a month it costs about {fmt_money(w.monthly_cost_usd)} "
               f"a month to run")
    if w.one_off_cost_usd > 0:
        running += f", after a one-off {fmt_money(w.one_off_cost_usd)} to set up"
    parts.append(running + ".")
    ft = [c for c in results.candidates if by_name[c.name].fine_tuned]
    if not w.fine_tuned and ft:
        f = max(ft, key=lambda c: c.quality.mean)
        verdict_ft = by_name[f.name].status
        why = {"significantly worse": "it scored significantly worse",
               "breaks a constraint": "it breaks a constraint"}.get(verdict_ft, "it was not significantly better")
        parts.append(f"Fine-tuning would cost {fmt_money(f.one_off_cost_usd)} up front "
                     f"({fmt_seconds(f.one_off_seconds)} of training) and {fmt_money(by_name[f.name].monthly_cost_usd)} "
                     f"a month to run; it scored {fmt_quality(f.quality.mean)}, so {why} — not worth it here.")
    elif w.fine_tuned:
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


def _without_verdict(results, study, ci: str) -> str:
    if not results.candidates and study is not None:  # `advise tune` on its own: the study is the result
        if study.best is None:
            return f"The search has not finished a trial yet. {study.summary}"
        text = (f"Use trial {study.best.number}: {study.best.method}"
                + (f" with {study.best.params}" if study.best.params else "")
                + f". It reached {fmt_quality(study.best.quality)} on the validation split")
        if study.best_eval is not None:
            text += (f" and {fmt_quality(study.best_eval[0])} on the held-out examples "
                     f"({ci} {fmt_ci(study.best_eval[1], study.best_eval[2])})")
        return text + (f", and cost {fmt_money(study.best.train_cost_usd)} to train. {study.summary}")
    if not results.candidates:
        return "Nothing was measured, so there is nothing to recommend yet. Run advise run task.yaml."
    top = max(results.candidates, key=lambda c: c.quality.mean)
    return (f"The run stopped before a verdict. So far {top.name} scores best, {_q_ci(top, ci)}, "
            f"but the comparison is incomplete; re-run to get a recommendation.")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _adequate(results: Results, name: str) -> bool:
    cmp = next((c for c in results.verdict.comparisons if c.candidate == name), None)
    return cmp is None or cmp.adequate


def figures(results, winner, rows, study, cons, metric: str, ci: str) -> tuple[Figure, ...]:
    """Four key figures for the top of the report."""
    if not rows:
        return ()
    by_name = {r.name: r for r in rows}
    if winner is None:
        top = max(rows, key=lambda r: r.quality)
        return (Figure("Best so far", top.name, top.kind),
                Figure("Quality", fmt_quality(top.quality), f"{ci} {fmt_ci(top.ci_low, top.ci_high)}"))
    w = by_name[winner.name]
    others = [r for r in rows if r.name != w.name]
    runner = max(others, key=lambda r: r.quality) if others else None
    figures = [
        Figure("Recommended", w.kind, w.name),
        Figure(f"Quality ({metric_label(metric)})", fmt_quality(w.quality),
               f"{ci} {fmt_ci(w.ci_low, w.ci_high)}"
               + (f"; next best {runner.name} {fmt_quality(runner.quality)}" if runner else "")),
        Figure("Running cost", f"{fmt_money(w.monthly_cost_usd)}/month",
               f"at {cons.queries_per_month:,} queries a month; p95 latency {fmt_ms(w.latency_p95_ms)}"),
    ]
    ft_rows = [r for r in rows if r.fine_tuned]
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




def knowledge_injection(results: Results) -> str:
    """Did continued pre-training on the corpus move quality, next to SFT alone and to RAG (which
    looks the same corpus up at query time)? Empty when no ``cpt+sft`` trial finished."""
    study = results.study
    if study is None:
        return ""
    def best(objective: str):
        values = [t.validation_quality for t in study.trials if t.objective == objective
                  and t.validation_quality is not None]
        return (max(values), len(values)) if values else None

    cpt, sft = best("cpt+sft"), best("sft")
    if cpt is None:
        return ""
    text = (f"Knowledge injection: continued pre-training on the corpus, then SFT (cpt+sft), reached "
            f"{fmt_quality(cpt[0])} on the validation split over {cpt[1]} trial(s)")
    if sft is not None:
        text += f"; SFT alone reached {fmt_quality(sft[0])} over {sft[1]}"
    rag = next((c for c in results.candidates if c.baseline == "rag" and c.details.get("kind") == "corpus"), None)
    if rag is not None:
        text += (f"; RAG, which looks the same corpus up at query time, scored {fmt_quality(rag.quality.mean)} "
                 "on the eval split (another split of the same data)")
    return text + "."


def reward_model_line(study) -> str:
    """The learned reward model behind ``rlhf`` trials, reported like an adapter: its held-out
    pairwise accuracy and where it is saved."""
    for t in study.trials if study is not None else ():
        rm = (t.training or {}).get("reward_model")
        if isinstance(rm, dict) and rm.get("accuracy") is not None:
            where = f", saved in adapters/{Path(rm['folder']).name}/" if rm.get("folder") else ""
            return (f"Reward model (rlhf): pairwise accuracy {fmt_quality(rm['accuracy'])} on "
                    f"{rm.get('held_out_pairs', '?')} held-out validation pairs after {rm.get('steps', '?')} steps{where}.")
    return ""
