"""After the search: every trial as results.json stores it, the Pareto front, the recommended trial
(``SELECTION_RULE``), its score on the held-out eval split, hyperparameter importance and trials.csv.

Single objective, three trade-offs: Optuna prunes only single-objective studies, and pruning
is what makes a search affordable, so the study maximises *validation quality*; training cost
and latency are recorded on every trial and the Pareto front over (quality ↑, training cost ↓,
latency p95 ↓) is computed from them here.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import warnings
from pathlib import Path

from foundation.measure import measure_quality, write_predictions
from foundation.progress import QUIET
from foundation.results import Quality, Study, Trial
from training.artifacts import TrialRecord, load_trained, replace_dir
from training.evaluate import Evaluator
from training.space import clean_params
from tuner.storage import hide_password

SELECTION_RULE = ("best validation quality within the constraints; trials not significantly worse than it "
                  "(paired bootstrap, {conf:.0%}) or within {min_gain:g} of it are tied, and the cheapest of "
                  "them to train is recommended; its eval-split score is reported")
OBJECTIVES = ["validation quality (max)", "training cost (min)", "latency p95 (min)"]


_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def result_trial(t) -> Trial:
    """An Optuna FrozenTrial as the Trial stored in results.json."""
    u = t.user_attrs
    params = clean_params(t.params)
    objective = u.get("objective", params.pop("objective", "sft"))
    params.pop("objective", None)
    note = u.get("note")
    if t.state.name == "FAIL" and note is None:
        note = t.system_attrs.get("fail_reason") or "failed (its worker stopped sending heartbeats)"
    intermediate = {str(k): float(v) for k, v in t.intermediate_values.items()}
    retry_of = u.get("retry_of", t.system_attrs.get("failed_trial"))
    return Trial(
        number=t.number, state=_STATES.get(t.state.name, t.state.name.lower()), method=params.get("method", "?"),
        objective=objective, training=u.get("training", {}),
        params=params, trainable_params=u.get("trainable_params"),
        estimated_train_seconds=u.get("estimated_train_seconds"), train_seconds=u.get("train_seconds"),
        train_cost_usd=u.get("train_cost_usd"), peak_memory_mb=u.get("peak_memory_mb"),
        latency_p95_ms=u.get("latency_p95_ms"), validation_quality=u.get("validation_quality"),
        steps=u.get("steps"), intermediate=intermediate, note=note, trial_seconds=u.get("trial_seconds"),
        trial_cost_usd=u.get("trial_cost_usd"), validation_ci=u.get("validation_ci"), settings=u.get("settings", {}),
        adapter_dir=u.get("adapter_dir"), retry_of=retry_of, worker=u.get("worker"), phases=u.get("phases", {}))


def pareto_front(trials: list[Trial]) -> set[int]:
    """Numbers of the finished trials no other trial beats on all of quality ↑, cost ↓, latency ↓."""
    done = [t for t in trials if t.state == "complete" and t.validation_quality is not None]

    def key(t):
        return (t.validation_quality, -(t.train_cost_usd or 0.0), -(t.latency_p95_ms or 0.0))

    front = set()
    for t in done:
        a = key(t)
        if not any(all(x >= y for x, y in zip(key(o), a)) and key(o) != a for o in done if o is not t):
            front.add(t.number)
    return front


def select_trial(trials: list[Trial], scores: dict[int, list[float]], task) -> tuple[int | None, list[str]]:
    """The recommended trial under ``SELECTION_RULE``, and notes on how it was chosen."""
    from foundation.stats import judge

    done = [t for t in trials if t.state == "complete" and t.validation_quality is not None]
    if not done:
        return None, ["no trial finished, so nothing is recommended"]
    cons, vc = task.constraints, task.verdict
    notes = []

    def fits(t):
        if cons.latency_p95_ms is not None and (t.latency_p95_ms or 0) > cons.latency_p95_ms:
            return False
        return cons.budget_usd is None or (t.train_cost_usd or 0) <= cons.budget_usd

    feasible = [t for t in done if fits(t)]
    if not feasible:
        notes.append("no finished trial meets the constraints (latency p95, budget); chose among all of them")
        feasible = done
    best = max(feasible, key=lambda t: (t.validation_quality, -(t.train_cost_usd or 0.0), -t.number))
    tied = []
    for t in feasible:
        if t is best:
            tied.append(t)
            continue
        a, b = scores.get(best.number), scores.get(t.number)
        if a and b and len(a) == len(b):
            adequate = judge(a, b, vc, task.seed)["adequate"]
        else:  # per-example scores missing (an old study): compare the means
            adequate = best.validation_quality - t.validation_quality <= vc.min_gain
        if adequate:
            tied.append(t)
    pick = min(tied, key=lambda t: (t.train_cost_usd or 0.0, t.latency_p95_ms or 0.0, -t.validation_quality, t.number))
    if pick is not best:
        notes.append(f"trial {pick.number} is tied with the best-scoring trial {best.number} "
                     f"({pick.validation_quality:.3f} vs {best.validation_quality:.3f} on validation) and cheaper to train")
    return pick.number, notes


def importance(study) -> tuple[dict[str, float], str | None]:
    """Hyperparameter importance (PED-ANOVA), the 12 largest non-zero values.

    Measured on a 60-trial study over the whole space (2 busy CPU cores): PED-ANOVA 21 ms,
    fANOVA 968 ms. PED-ANOVA also ranks method-specific parameters (``lora.learning_rate``,
    the true driver of that synthetic objective), where fANOVA sees only the parameters
    every trial shares and credited ``method`` instead.
    """
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(done) < 3:
        return {}, None
    import optuna.importance  # slow to import (fANOVA's forest): only when there is something to rank
    from optuna.importance import PedAnovaImportanceEvaluator
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except Exception:  # too few distinct values and the like: importance is a nicety
        return {}, None
    top = sorted(((k, float(v)) for k, v in values.items() if v > 0), key=lambda kv: -kv[1])[:12]
    return dict(top), "PedAnovaImportanceEvaluator"


def summarize(study, task, splits, *, run_dir: Path, storage_url: str, excluded: dict, status: str,
              excluded_objectives: dict | None = None,
              stopped_reason: str | None, notes: list[str], sampler: str, pruner: str,
              flops_per_second: float | None = None, evaluator: Evaluator | None = None, device: str | None = None,
              progress=QUIET, eval_messages=None) -> Study:
    """Build the results.json summary; evaluate the recommended trial on the eval split once."""
    frozen = study.get_trials(deepcopy=False)
    trials = [result_trial(t) for t in frozen]
    front = pareto_front(trials)
    for t in trials:
        t.pareto = t.number in front
    scores = {t.number: t.user_attrs.get("validation_scores") for t in frozen}
    best, how = select_trial(trials, scores, task)
    imp, imp_evaluator = importance(study)
    summary = Study(study_name=study.study_name, storage=hide_password(storage_url), status=status,
                    sampler=sampler, pruner=pruner, trials=trials,
                    excluded_methods=dict(study.user_attrs.get("excluded_methods", excluded)), best_trial=best,
                    training_objectives=list(study.user_attrs.get("objectives", ["sft"])),
                    excluded_objectives=dict(study.user_attrs.get("excluded_objectives", excluded_objectives or {})),
                    selection_rule=SELECTION_RULE.format(conf=task.verdict.confidence, min_gain=task.verdict.min_gain),
                    importance=imp, importance_evaluator=imp_evaluator, objectives=OBJECTIVES,
                    stopped_reason=stopped_reason, notes=notes + how, flops_per_second=flops_per_second)
    if best is not None:
        chosen = next(t for t in trials if t.number == best)
        source_dir = run_dir / (chosen.adapter_dir or f"adapters/trial-{best}")
        best_dir = run_dir / "adapters" / "best"
        if source_dir.exists():
            tmp = best_dir.parent / f".best.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source_dir, tmp)
            replace_dir(tmp, best_dir)
            summary.best_adapter_dir = str(best_dir.relative_to(run_dir))
            quality = evaluate_on_eval(best_dir, task, splits, run_dir, evaluator, device, progress, eval_messages)
            summary.best_eval = quality
            chosen.eval_quality = quality.mean
        else:
            summary.notes.append(f"trial {best}'s adapter is not in this run directory (it ran on "
                                 f"{chosen.worker or 'another worker'}); run `advise tune --resume` there or share "
                                 "output.dir between workers to evaluate and export it")
    write_trials_csv(trials, run_dir / "trials.csv")
    return summary


def evaluate_on_eval(adapter_dir: Path, task, splits, run_dir: Path, validation: Evaluator | None = None,
                     device: str | None = None, progress=QUIET, messages_for=None) -> Quality:
    """The recommended trial's score on the held-out eval split (cached next to the adapter), with
    the task's prompts or ``messages_for``'s (FT + RAG: with retrieved context)."""
    record = TrialRecord.read(adapter_dir)
    cache = adapter_dir / "advise_eval.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("trial") == record.trial and cached.get("n") == len(splits.eval):
            return Quality(**cached["quality"])
    model, tokenizer = load_trained(adapter_dir, device, validation.tokenizer if validation else None)
    embedder = validation.embedder if validation else task_embedder(task, "cpu")
    evaluator = Evaluator(task, tokenizer, splits.eval, embedder, messages_for=messages_for)
    with progress.task(f"Evaluating trial {record.trial} on the eval split", total=None):
        texts = evaluator.texts(model)
        scores = evaluator.scores(model, texts)
    quality = measure_quality(task, scores)
    write_predictions(run_dir / "predictions" / "tuned.jsonl", splits.eval, texts, scores)
    cache.write_text(json.dumps({"trial": record.trial, "n": len(splits.eval), "quality": quality.model_dump()}))
    return quality


def task_embedder(task, device: str):
    """The embedder when the task's metric needs one, else None."""
    from foundation.metrics import METRICS

    if not METRICS[task.metric.name].needs_embedder:
        return None
    from foundation.models import load_embedder, resolve_embedder

    return load_embedder(resolve_embedder(task.embedder, task.base_dir), device)


CSV_COLUMNS = ("number", "state", "method", "params", "validation_quality", "eval_quality", "train_seconds",
               "estimated_train_seconds", "train_cost_usd", "trial_seconds", "trial_cost_usd", "latency_p95_ms",
               "peak_memory_mb", "trainable_params", "steps", "pareto", "retry_of", "worker", "note")


def write_trials_csv(trials: list[Trial], path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for t in sorted(trials, key=lambda t: t.number):
            row = t.model_dump()
            row["params"] = json.dumps(t.params, sort_keys=True)
            w.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])
    os.replace(tmp, path)
    return path
