"""The study: open (or join) it, seed it, optimise. Everything else is a module of its own:

- ``training.trial``: one trial (train, validate, time, save), ``run_trial``;
- ``tuner.storage``: the Optuna RDB storage, heartbeats, the checks made when joining;
- ``tuner.summary``: Pareto front, the recommended trial, its eval score, importance, CSV.

Sampler and pruner: grouped multivariate TPE (each method's parameters form their own group),
seeded; Hyperband over training steps by default. Validation quality is reported from a
``TrainerCallback`` every ``tune.eval_every`` steps, so pruned trials really stop. A trial whose
worker died (``kill -9``) is failed once its heartbeat is stale, when a worker next asks for a trial
or before a worker leaves the study, and retried; one stopped by Ctrl-C is marked failed at once
and retried by ``--resume``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import AdviseError
from foundation import interrupt
from foundation.progress import QUIET
from foundation.results import Study, TrialConfig
from training.evaluate import Evaluator
from training.methods import METHODS, applicable
from training.objectives import OBJECTIVES, ObjectiveFacts
from training.objectives import applicable as applicable_objectives
from training.modelfacts import model_facts
from training.space import SearchSpace
from tuner.storage import check_same_search, open_storage, set_aside_study
from tuner.summary import result_trial, summarize, task_embedder
from training.trial import TrainingKit, TrialContext, TrialPrompts, objective

FAILURES_IN_A_ROW = 3  # stop a search that only fails (a broken setup, not bad luck)
CPT_CHUNK_TOKENS = 256  # continued pre-training trains on corpus windows of this many model tokens


def make_pruner(tune):
    """The pruner and how results.json describes it."""
    import optuna

    if tune.pruner == "hyperband":
        return (optuna.pruners.HyperbandPruner(min_resource=tune.eval_every, max_resource=tune.max_steps,
                                               reduction_factor=3),
                f"HyperbandPruner(min_resource={tune.eval_every}, max_resource={tune.max_steps}, reduction_factor=3)")
    if tune.pruner == "median":
        warmup = tune.eval_every - 1
        return (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup),
                f"MedianPruner(n_startup_trials=2, n_warmup_steps={warmup})")
    return optuna.pruners.NopPruner(), "NopPruner()"


def make_sampler(seed: int, n_trials: int):
    """The sampler and how results.json describes it."""
    import optuna

    startup = min(10, max(2, n_trials // 3))
    return (optuna.samplers.TPESampler(group=True, seed=seed, constant_liar=True, n_startup_trials=startup),
            f"TPESampler(multivariate=True, group=True, constant_liar=True, n_startup_trials={startup}, seed={seed})")


def _log_trial(progress):
    def log(study, trial):
        t = result_trial(trial)
        quality = f", validation {t.validation_quality:.3f}" if t.validation_quality is not None else ""
        seconds = f", {t.trial_seconds:.0f} s" if t.trial_seconds is not None else ""
        note = f" ({t.note})" if t.note else ""
        progress.log(f"trial {t.number} {t.method}: {t.state}{quality}{seconds}{note}")

    return log


@dataclass
class StopReason:
    """Why a callback stopped the search (None while it runs on)."""

    text: str | None = None


def _budget_callback(tune, stop: StopReason):
    def check(study, trial):
        if tune.budget_usd is None:
            return
        spent = sum(t.user_attrs.get("trial_cost_usd", 0.0) for t in study.get_trials(deepcopy=False))
        if spent >= tune.budget_usd:
            stop.text = f"money budget spent: ${spent:.2f} of tune.budget_usd ${tune.budget_usd:.2f}"
            study.stop()

    return check


def _failures_callback(stop: StopReason):
    from optuna.trial import TrialState

    def check(study, trial):
        trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        last = trials[-FAILURES_IN_A_ROW:]
        if len(last) == FAILURES_IN_A_ROW and all(t.state == TrialState.FAIL for t in last):
            stop.text = (f"{FAILURES_IN_A_ROW} trials in a row failed; the last: "
                         f"{last[-1].user_attrs.get('note', 'no reason recorded')}")
            study.stop()

    return check


def _enqueue_retries(study, tune) -> int:
    """Re-enqueue trials stopped by Ctrl-C (heartbeat-stale ones are re-enqueued by Optuna)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    n = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in retried:
            depth = t.user_attrs.get("retry_depth", 0)
            if depth < tune.max_retry:
                study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retry_depth": depth + 1})
                n += 1
    return n


def _fix_choices(study, what: str, chosen, excluded, notes) -> list[str]:
    """Categorical choices must not change within a study: the first worker fixes the methods
    (``what="methods"``) and the objectives."""
    stored = study.user_attrs.get(what)
    if stored is None:
        study.set_user_attr(what, [m.name for m in chosen])
        study.set_user_attr(f"excluded_{what}", excluded)
        return [m.name for m in chosen]
    if set(stored) != {m.name for m in chosen}:
        notes.append(f"the study searches {', '.join(stored)} as fixed when it started; this worker's tune.{what} "
                     "or hardware would give a different set (start a new study to change it)")
    return stored


def _open_study(task, run_dir: Path, storage: str | None, resume: bool, notes: list[str],
                study_name: str | None = None):
    import optuna

    explicit = storage or task.tune.storage
    url = explicit or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if not explicit and not resume:
        set_aside_study(run_dir, notes)
    pruner, pruner_text = make_pruner(task.tune)
    study = optuna.create_study(study_name=study_name or task.name, storage=open_storage(url, task.tune), direction="maximize",
                                load_if_exists=True, pruner=pruner)
    return study, url, bool(explicit), pruner_text


def _worker(task, splits, corpus, run_dir: Path, progress):
    """What this worker needs before it can run a trial: the model's facts, the methods and
    objectives that apply here, and the training kit (tokenizer, train records, corpus chunks)."""
    from foundation.models import load_model, load_tokenizer, pick_device, resolve_model

    device = pick_device(task.device)
    source = resolve_model(task.model, task.base_dir)
    tokenizer = load_tokenizer(source, task.trust_remote_code)
    base = load_model(source, device=device, trust_remote_code=task.trust_remote_code, seed=task.seed)
    facts, config = model_facts(base, device, task.tune.memory_budget_gb), base.config
    del base
    methods, excluded = applicable(task.tune.methods, facts)
    if not methods:
        raise AdviseError("no fine-tuning method applies here: " + "; ".join(f"{k}: {v}" for k, v in excluded.items()),
                          where="tune.methods")
    objectives, excluded_objectives = applicable_objectives(
        task.tune.objectives, ObjectiveFacts.of(task, splits.kind, corpus))
    if not objectives:
        raise AdviseError("no training objective applies to this data: " + "; ".join(
            f"{k}: {v}" for k, v in excluded_objectives.items()), where="tune.objectives")
    kit = TrainingKit(task=task, records=splits.train, device=device, source=source, tokenizer=tokenizer,
                      facts=facts, progress=progress, model_config=config, reuse_base=True,
                      corpus=_corpus_chunks(corpus, tokenizer, objectives), validation=splits.validation,
                      run_dir=run_dir)
    return kit, (methods, excluded), (objectives, excluded_objectives)


def _corpus_chunks(corpus, tokenizer, objectives) -> list[str]:
    """The corpus cut into training-sized windows of the model's own tokens, when an objective
    pre-trains on it (``cpt+sft``); otherwise nothing is cut."""
    if not corpus or not any("cpt" in o.stages for o in objectives):
        return []
    from baselines.rag import chunk_documents

    return [c.text for c in chunk_documents(corpus, tokenizer, CPT_CHUNK_TOKENS, CPT_CHUNK_TOKENS // 8)]


def _enqueue_first(study, space: SearchSpace, pilot: TrialConfig | None, enqueue: list[dict] | None) -> None:
    """A fresh study runs the pilot's configuration first, then the ``enqueue`` ones."""
    first = [(pilot.method, {**pilot.params, "objective": pilot.objective}, "pilot")] if pilot else []
    first += [(c["method"], {k: v for k, v in c.items() if k != "method"}, "enqueued") for c in enqueue or []]
    for method, params, origin in first:
        optuna_params = space.enqueueable(method, params)
        if optuna_params is not None:
            study.enqueue_trial(optuna_params, user_attrs={"origin": origin})


def _trial_context(kit: TrainingKit, splits, run_dir: Path, space: SearchSpace, local_excluded: dict,
                   notes: list[str], prompts: TrialPrompts | None = None) -> TrialContext:
    from foundation.costs import hourly_price
    from training.estimate import mean_record_tokens, measure_flops
    from training.lengths import record_token_lengths, training_length

    task = kit.task
    lengths = record_token_lengths(kit.tokenizer, task.prompt, splits.train, kit.messages_for)
    fit = training_length(lengths, None if prompts else task.tune.max_seq_length, kit.model_config,
                          "tune.max_seq_length")
    if fit.truncated or fit.dropped or fit.derived:
        notes.append(fit.describe("tune.max_seq_length"))
    if not splits.validation:  # a trial scored on nothing would look like a measured 0.0
        raise AdviseError("no validation records to measure the trials on (data.validation_fraction is 0, or fewer "
                          "than 10 train records)", where="data.validation_fraction")
    return TrialContext(
        kit=kit, run_dir=run_dir, space=space, local_excluded=local_excluded,
        validation=Evaluator(task, kit.tokenizer, splits.validation, task_embedder(task, kit.device),
                             messages_for=prompts.validation if prompts else None),
        price_per_hour=hourly_price(task.constraints, kit.device), flops_per_second=measure_flops(kit.device),
        tokens_per_record=mean_record_tokens(lengths, fit.max_seq_length), max_seq_length=fit.max_seq_length)


def _optimize(study, ctx: TrialContext, n_trials: int | None, progress) -> tuple[str, str]:
    """Run trials until the study's budget; returns (status, why it stopped)."""
    import optuna
    from optuna.trial import TrialState

    tune = ctx.task.tune
    stop = StopReason()
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done = sum(t.state in finished for t in study.get_trials(deepcopy=False))
    if done >= tune.n_trials:
        return "complete", f"the study already has {done} finished trials (tune.n_trials is {tune.n_trials})"
    callbacks = [_log_trial(progress), _budget_callback(tune, stop), _failures_callback(stop),
                 optuna.study.MaxTrialsCallback(tune.n_trials, states=finished)]
    # Without --n-trials a worker runs until the study's budget; failures are bounded separately.
    worker_trials = n_trials if n_trials is not None else (tune.n_trials - done) + tune.max_retry + 2
    def optimize(n: int) -> None:
        study.optimize(lambda trial: objective(trial, ctx), n_trials=n, timeout=tune.timeout_s,
                       callbacks=callbacks, catch=(Exception,), gc_after_trial=True)

    try:
        optimize(worker_trials)
        if stop.text is None:
            _run_retries_of_dead_workers(study, tune, optimize)
    except KeyboardInterrupt:
        interrupt.handled()  # the study ends here; what it found is still summarised and saved
        return "interrupted", "interrupted (Ctrl-C); `advise tune --resume` continues the study"
    if stop.text is not None:
        return "complete", stop.text
    n = sum(t.state in finished for t in study.get_trials(deepcopy=False))
    return "complete", (f"the study reached tune.n_trials ({tune.n_trials})" if n >= tune.n_trials
                        else "this worker's trials (--n-trials) or tune.timeout_s ran out")


def _run_retries_of_dead_workers(study, tune, optimize) -> None:
    """Trials another worker left running when it died (``kill -9``, a lost machine): wait out the
    heartbeat grace period, fail them (Optuna's retry callback enqueues each again) and run the
    retries here, so the study never ends on a lost trial. Optuna only fails a stale trial when a
    worker asks for its next trial, and this worker may have had none left to ask for. A trial
    whose worker is still beating outlasts the wait and is left to that worker."""
    import time

    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    deadline = time.monotonic() + 3 * tune.heartbeat_s  # the grace period (2 beats) and one more
    while True:
        fail_stale_trials(study)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if waiting:
            optimize(len(waiting))
            continue
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) or time.monotonic() > deadline:
            return
        time.sleep(min(1.0, tune.heartbeat_s / 2))


def run_study(task, splits, *, run_dir: Path, progress=QUIET, pilot: TrialConfig | None = None,
              storage: str | None = None, n_trials: int | None = None, resume: bool = False,
              enqueue: list[dict] | None = None, study_name: str | None = None, corpus=(),
              prompts: TrialPrompts | None = None) -> Study:
    """Run (or resume, or join) the study for ``task``; returns the summary stored in results.json.

    ``n_trials`` caps this worker's trials (``advise tune --n-trials``); the study as a whole
    stops at ``tune.n_trials`` finished or pruned trials, ``tune.timeout_s`` or ``tune.budget_usd``.
    A fresh study runs the ``pilot`` configuration first, then the ``enqueue`` configurations
    (clean parameters, e.g. ``{"method": "lora", "learning_rate": 1e-6}``), then sampled ones.
    ``study_name`` names the study in its storage (default: the task's name); the service gives
    each run its own, so many runs can share one storage. ``corpus`` (documents) feeds continued
    pre-training; ``prompts`` replaces the task's prompts in training, validation and eval (the
    FT + RAG candidate's retrieved context, when it won).
    """
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial's outcome is logged by _log_trial
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    kit, (methods, excluded), (objectives, excluded_objectives) = _worker(task, splits, corpus, run_dir, progress)
    kit.messages_for = prompts.train if prompts else None

    notes: list[str] = []
    study, url, shared, pruner_text = _open_study(task, run_dir, storage, resume, notes, study_name)
    stored = _fix_choices(study, "methods", methods, excluded, notes)
    if "objectives" not in study.user_attrs and study.get_trials(deepcopy=False):
        stored_objectives = ["sft"]  # a study started before objectives were searched trained SFT only
    else:
        stored_objectives = _fix_choices(study, "objectives", objectives, excluded_objectives, notes)
    check_same_search(study, task.tune, url, task.source_path)
    space = SearchSpace([METHODS[name] for name in stored], task.tune.search,
                        [OBJECTIVES[name] for name in stored_objectives])
    existing = study.get_trials(deepcopy=False)
    # A fresh single-worker study is reproducible from task.seed; a resumed or shared one must
    # not replay the same random start-up samples as the other workers.
    seed = (task.seed + len(existing) + ((os.getpid() % 100_003) if shared else 0)) % 2**32  # numpy's seeds are 32-bit
    study.sampler, sampler_text = make_sampler(seed, task.tune.n_trials)
    if not existing:
        _enqueue_first(study, space, pilot, enqueue)
    elif retried := _enqueue_retries(study, task.tune):
        notes.append(f"re-enqueued {retried} trial(s) interrupted by Ctrl-C")

    local_excluded = {name: reason for name, reason in excluded.items() if name in stored}
    ctx = _trial_context(kit, splits, run_dir, space, local_excluded, notes, prompts)
    status, stopped = _optimize(study, ctx, n_trials, progress)
    return summarize(study, task, splits, run_dir=run_dir, storage_url=url, excluded=excluded,
                     excluded_objectives=excluded_objectives, status=status,
                     stopped_reason=stopped, notes=notes, sampler=sampler_text, pruner=pruner_text,
                     flops_per_second=ctx.flops_per_second, evaluator=ctx.validation, device=kit.device,
                     progress=progress, eval_messages=prompts.eval if prompts else None)
