"""The fine-tuning search as the report shows it."""
from __future__ import annotations

from foundation.results import Study, Trial
from reports.format import cut_text, fmt_money, fmt_params, fmt_seconds
from reports.view import HistoryPoint, MethodRow, StudyView, TrialRow

TOP_TRIALS = 5


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
        number=t.number, state=_state(t.state), params=fmt_params(t.params),
        method=t.method if t.objective == "sft" else f"{t.method} + {t.objective}",
        quality=_trial_quality(t), eval_quality=t.eval_quality, train_cost_usd=t.train_cost_usd,
        train_seconds=t.train_seconds, estimated_train_seconds=t.estimated_train_seconds,
        latency_p95_ms=t.latency_p95_ms, peak_memory_mb=t.peak_memory_mb, trainable_params=t.trainable_params,
        steps=t.steps, pareto=t.pareto, best=best is not None and t.number == best, note=cut_text(t.note or ""),
    )


def study_view(s: Study) -> StudyView:
    """The study as the report shows it: counts, best and top trials, Pareto front, methods, history."""
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
               + f"; {len(s.excluded_methods)} method(s) excluded"
               + (f"; objectives searched: {', '.join(s.training_objectives)}" if s.training_objectives != ["sft"] else "")
               + ". "
               + f"Training time {fmt_seconds(total_seconds)}, cost {fmt_money(total_cost)}."
               + (" The search was interrupted." if interrupted else "")
               + "".join(f" Every trial {n}." for n in s.notes if n.startswith("trained on ")))
    best_eval = (s.best_eval.mean, s.best_eval.ci_low, s.best_eval.ci_high, s.best_eval.n) if s.best_eval else None
    return StudyView(
        name=s.study_name, status=s.status, interrupted=interrupted, sampler=s.sampler, pruner=s.pruner,
        storage=s.storage, selection_rule=s.selection_rule, counts=counts, best=best, best_eval=best_eval,
        top_trials=tuple(top), pareto=tuple(pareto), trials=trials, methods=tuple(method_rows),
        importance=tuple(sorted(s.importance.items(), key=lambda kv: -kv[1])),
        history=tuple(history), total_train_cost_usd=total_cost, total_train_seconds=total_seconds, summary=summary,
        excluded_objectives=tuple(s.excluded_objectives.items()),
    )
