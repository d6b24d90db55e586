"""One fine-tuning configuration, trained: the pilot baseline and every tuner trial go through here.

``train_config`` is the one path from a :class:`TrialConfig` to a trained model: the method's
base model, its adapter (one builder, ``training.methods``), one mapping to ``TrainSettings``, and
the out-of-memory retry. ``run_trial`` is an Optuna trial on top of it: sample, train with the
pruning callback, validate, time, save, record. It takes a trial from ``study.ask()`` and can be
run and told on its own (``tests/test_tuner_trial.py``).
"""
from __future__ import annotations

import gc
import math
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from foundation.errors import first_line
from foundation.progress import QUIET
from foundation.resources import PeakMemory
from foundation.results import TrialConfig
from foundation.threads import fit_threads
from training.artifacts import TrialRecord, prepare_adapter, save_trial
from training.estimate import estimate_train_seconds
from training.evaluate import Evaluator, pruning_callback
from training.methods import METHODS, Method
from training.objectives import OBJECTIVES, TrainingJob
from training.modelfacts import ModelFacts
from training.space import SearchSpace, micro_batches
from training.training import TrainResult, TrainSettings, plan_steps


class TrialFailed(Exception):
    """A trial that cannot finish (out of memory at micro-batch 1, method not available here)."""


@dataclass(frozen=True)
class TrialPrompts:
    """Prompt messages (record -> messages) for training, validation and eval when they are not
    the task's own: the FT + RAG candidate's, with retrieved context. A study started because FT + RAG
    won trains and scores every trial with them."""

    train: Callable
    validation: Callable
    eval: Callable


@dataclass
class TrainingKit:
    """What training a configuration needs on one worker: shared by the pilot and every trial."""

    task: object
    records: list  # what it trains on
    device: str
    source: object  # foundation.models.ModelSource
    tokenizer: object
    facts: ModelFacts
    progress: object = QUIET
    model_config: object = None  # the base model's transformers config (its context length)
    reuse_base: bool = False  # keep one base model for every trial of this worker (see load_base)
    corpus: list = field(default_factory=list)  # corpus chunk texts (continued pre-training)
    messages_for: Callable | None = None  # record -> prompt messages, when not the task's own (FT + RAG)
    validation: list = field(default_factory=list)  # held-out records (a reward model's accuracy)
    run_dir: Path | None = None
    cache: dict = field(default_factory=dict)  # what objectives keep across this worker's trials
    _base: object = field(default=None, repr=False)
    _pristine: dict | None = field(default=None, repr=False)

    def load_base(self, method: Method):
        """The base model for ``method``: its own loader for QLoRA's 4-bit base; otherwise loaded
        once per worker when ``reuse_base``, and its weights put back from a copy before each use,
        since PiSSA, BitFit and full fine-tuning change them (a trial of a 1B model spent more
        time loading it than training; bench/results/sweep_cuda.json)."""
        from foundation.models import load_model

        if method.load_base is not None:
            return method.load_base(self.source, self.device, self.task)
        if not self.reuse_base:
            return self._load(load_model)
        if self._base is None:
            self._base = self._load(load_model)
            self._pristine = {k: v.detach().to("cpu", copy=True) for k, v in self._base.state_dict().items()}
        else:
            self._base.load_state_dict(self._pristine)
        for p in self._base.parameters():
            p.requires_grad_(False)
        self._base.eval()
        return self._base

    def release(self, trained) -> None:
        """Take a trained model's adapter off the shared base, so the next trial starts clean."""
        if not self.reuse_base or self._base is None:
            return
        from peft import PeftModel

        if isinstance(trained, PeftModel):
            tuner = trained.base_model
            base = tuner.unload() if hasattr(tuner, "unload") else trained.get_base_model()
            if base is not self._base:  # an adapter kind that cannot be taken off: load afresh next time
                self.discard_base()
        elif trained is not self._base:
            self.discard_base()

    def discard_base(self) -> None:
        """Forget the shared base (after a failure left it in an unknown state)."""
        self._base, self._pristine = None, None

    def _load(self, load_model):
        return load_model(self.source, device=self.device, trust_remote_code=self.task.trust_remote_code,
                          seed=self.task.seed)


def train_settings(config: TrialConfig, *, micro_batch_size: int, seed: int,
                   gradient_checkpointing: bool = False) -> TrainSettings:
    """The one mapping from a configuration to the trainer's settings."""
    p = config.params
    micro, accum = micro_batches(int(p["batch_size"]), micro_batch_size)
    return TrainSettings(max_steps=config.max_steps, epochs=float(p["epochs"]), learning_rate=float(p["learning_rate"]),
                         batch_size=micro, grad_accum=accum, max_seq_length=config.max_seq_length,
                         warmup_ratio=float(p.get("warmup_ratio", 0.0)), weight_decay=float(p.get("weight_decay", 0.0)),
                         time_budget_s=config.time_budget_s, seed=seed, gradient_checkpointing=gradient_checkpointing)


def planned_steps(config: TrialConfig, kit: TrainingKit, micro_batch_size: int) -> int:
    """The optimiser steps training ``config`` on ``kit.records`` will take, every stage counted."""
    return plan_steps(len(kit.records), train_settings(config, micro_batch_size=micro_batch_size, seed=kit.task.seed))


@dataclass
class TrainedModel:
    method: Method
    config: TrialConfig
    result: TrainResult
    settings: TrainSettings
    planned_steps: int
    init_dir: Path | None  # PiSSA's initial adapter, needed to save it as plain LoRA
    peak_memory_mb: float
    callback: object = None  # the callback of the attempt that finished
    notes: list[str] = field(default_factory=list)  # out-of-memory retries
    load_seconds: float = 0.0  # getting the base model and building the adapter

    @property
    def model(self):
        return self.result.model


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def train_config(config: TrialConfig, kit: TrainingKit, *, micro_batch_size: int, label: str,
                 make_callback: Callable[[], object] | None = None,
                 before_training: Callable | None = None) -> TrainedModel:
    """Train ``config`` on ``kit.records``. Out of memory halves the micro-batch and doubles the
    accumulation (the effective batch stays), down to 1; then :class:`TrialFailed`.

    ``make_callback()`` gives a fresh ``TrainerCallback`` for each attempt (e.g. pruning);
    ``before_training(base, adapter, settings, steps)`` runs once, before the first attempt.
    """
    method = METHODS[config.method]
    settings = train_settings(config, micro_batch_size=micro_batch_size, seed=kit.task.seed,
                              gradient_checkpointing=getattr(kit.task.tune, "gradient_checkpointing", False))
    steps = plan_steps(len(kit.records), settings)
    notes: list[str] = []
    while True:
        settings.micro_batch_from_memory = kit.device.startswith("cuda") and not notes
        load_start = time.perf_counter()
        base = kit.load_base(method)
        adapter, init_dir = prepare_adapter(method, config.params, kit.facts)
        load_seconds = time.perf_counter() - load_start
        callback = make_callback() if make_callback else None
        settings.output_dir = tempfile.mkdtemp(prefix="advise-trial-")
        try:
            with kit.progress.task(label[:110], total=steps) as advance, PeakMemory(kit.device) as mem:
                if before_training is not None and not notes:
                    before_training(base, adapter, settings, steps)
                result = OBJECTIVES[config.objective].train(TrainingJob(
                    model=base, tokenizer=kit.tokenizer, records=kit.records, prompt=kit.task.prompt,
                    settings=settings, adapter=adapter, params=config.params, task=kit.task, device=kit.device,
                    callbacks=[callback] if callback else [], on_step=lambda step, total: advance(),
                    corpus=kit.corpus, messages_for=kit.messages_for, validation=kit.validation,
                    run_dir=kit.run_dir, cache=kit.cache))
            return TrainedModel(method, config, result, settings, steps, init_dir, mem.peak_mb, callback, notes,
                                load_seconds)
        except BaseException as e:
            kit.discard_base()  # it may hold half an adapter now
            if not isinstance(e, Exception) or not is_out_of_memory(e):
                raise
            del base, adapter
            free_memory(kit.device)
            if settings.batch_size == 1:
                raise TrialFailed("out of memory even at micro-batch 1: " + "; ".join(notes + [str(e)[:200]]))
            notes.append(f"out of memory at micro-batch {settings.batch_size}; retried at "
                         f"{settings.batch_size // 2} × {settings.grad_accum * 2} accumulation")
            settings.batch_size //= 2
            settings.grad_accum *= 2
        finally:
            shutil.rmtree(settings.output_dir, ignore_errors=True)


def trial_record(task, config: TrialConfig, trial_number: int | None) -> TrialRecord:
    method = METHODS[config.method]
    return TrialRecord(trial=trial_number, study=task.name, method=method.name, objective=config.objective,
                       params=config.params, full_model=method.full_model, mergeable=method.mergeable,
                       model=task.model, base_dir=str(task.base_dir), seed=task.seed,
                       trust_remote_code=task.trust_remote_code, system=task.prompt.system,
                       template=task.prompt.template)


# ---------------------------------------------------------------- an Optuna trial

@dataclass
class TrialContext:
    """What every trial of one worker shares."""

    kit: TrainingKit
    run_dir: Path
    space: SearchSpace
    local_excluded: dict  # method -> why it cannot run on this worker
    validation: Evaluator
    price_per_hour: float
    flops_per_second: float
    tokens_per_record: float
    max_seq_length: int  # tune.max_seq_length, or derived from the data

    @property
    def task(self):
        return self.kit.task


def trial_config(params: dict, tune, max_seq_length: int) -> TrialConfig:
    """Sampled parameters (clean names) as the configuration a trial trains."""
    return TrialConfig(method=params["method"], objective=params.get("objective", "sft"),
                       params={k: v for k, v in params.items() if k not in ("method", "objective")},
                       max_steps=tune.max_steps, max_seq_length=max_seq_length, time_budget_s=tune.trial_timeout_s)


def run_trial(trial, ctx: TrialContext) -> float:
    """Train one sampled configuration, reporting to the pruner; returns validation quality."""
    import optuna

    started = time.perf_counter()
    params = ctx.space.suggest(trial)
    config = trial_config(params, ctx.task.tune, ctx.max_seq_length)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("objective", config.objective)
    same = same_configuration(trial)
    if same is not None:  # TPE re-samples points of a discrete space; seeded training would repeat the result
        _set_attrs(trial, {"steps": 0, "duplicate_of": same.number,
                           "note": f"same configuration as trial {same.number} ({same.state.name.lower()}): "
                                   "not trained again"})
        raise optuna.TrialPruned()
    if config.method in ctx.local_excluded:
        raise TrialFailed(f"{config.method} does not apply on this worker: {ctx.local_excluded[config.method]}")
    trained = _train(trial, ctx, config)
    try:
        _record_training(trial, ctx, trained)
        result, reason = trained.result, trained.callback.reason
        if reason is None and result.final_loss is not None and not math.isfinite(result.final_loss):
            reason = f"loss became {result.final_loss} at step {result.steps}"
        if reason is None:
            quality = _validate_and_save(trial, ctx, trained)
        _finish(trial, ctx, started, trained.notes + ([reason] if reason else []))
    finally:
        ctx.kit.release(trained.model)
        del trained
        free_memory(ctx.kit.device)
    if reason is not None:
        raise optuna.TrialPruned(reason)
    return quality


def _train(trial, ctx: TrialContext, config: TrialConfig) -> TrainedModel:
    """Train with the pruning callback; the FLOPs estimate is recorded before training starts."""
    tune = ctx.task.tune

    def estimate(base, adapter, settings: TrainSettings, steps: int) -> None:
        trainable = METHODS[config.method].trainable_parameters(base, adapter)
        virtual = config.params.get("num_virtual_tokens", 0)
        tokens = (ctx.tokens_per_record + virtual) * settings.batch_size * settings.grad_accum
        trial.set_user_attr("estimated_train_seconds", estimate_train_seconds(
            ctx.kit.facts.total_params, trainable, tokens, steps, ctx.flops_per_second))

    objective = "" if config.objective == "sft" else f" ({config.objective})"
    planned = planned_steps(config, ctx.kit, tune.micro_batch_size)
    label = f"Trial {trial.number}: {config.method}{objective} " + ", ".join(
        f"{k}={_param_text(v)}" for k, v in config.params.items())
    return train_config(config, ctx.kit, micro_batch_size=tune.micro_batch_size, label=label,
                        make_callback=lambda: pruning_callback(trial, ctx.validation.mean, tune.eval_every, planned),
                        before_training=estimate)


def _record_training(trial, ctx: TrialContext, trained: TrainedModel) -> None:
    result, callback = trained.result, trained.callback
    train_seconds = max(0.0, result.train_seconds - callback.eval_seconds)  # validation is not training
    _add_phases(trial, load_model=trained.load_seconds, trainer_setup=result.setup_seconds,
                optimizer_steps=train_seconds, validation=callback.eval_seconds)
    _set_attrs(trial, {
        "trainable_params": result.trainable_params, "total_params": result.total_params, "steps": result.steps,
        "train_seconds": train_seconds, "train_cost_usd": train_seconds / 3600 * ctx.price_per_hour,
        "peak_memory_mb": trained.peak_memory_mb, "final_loss": result.final_loss, "stopped": result.stopped_reason,
        "intermediate": {str(k): v for k, v in callback.intermediate.items()}, "training": result.details,
        "settings": {"micro_batch_size": trained.settings.batch_size, "grad_accum": trained.settings.grad_accum,
                     "planned_steps": trained.planned_steps, "max_seq_length": trained.settings.max_seq_length,
                     "device": ctx.kit.device},
    })


def _validate_and_save(trial, ctx: TrialContext, trained: TrainedModel) -> float:
    """Score the validation split, time single queries, save the adapter; returns the mean."""
    from foundation.measure import measure_quality
    from foundation.stats import percentile

    t0 = time.perf_counter()
    scores = ctx.validation.scores(trained.model)
    quality = measure_quality(ctx.task, scores)
    trial.report(quality.mean, trained.result.steps)
    t1 = time.perf_counter()
    latency = ctx.validation.latency_ms(trained.model, ctx.task.tune.latency_queries)
    t2 = time.perf_counter()
    adapter_dir = ctx.run_dir / "adapters" / f"trial-{trial.number}"
    save_trial(adapter_dir, trained.method, trained.model, trained.init_dir,
               trial_record(ctx.task, trained.config, trial.number), ctx.kit.tokenizer)
    _add_phases(trial, validation=t1 - t0, latency=t2 - t1, save=time.perf_counter() - t2)
    _set_attrs(trial, {
        "validation_quality": quality.mean, "validation_ci": [quality.ci_low, quality.ci_high],
        "validation_scores": scores, "latency_p50_ms": percentile(latency, 50),
        "latency_p95_ms": percentile(latency, 95), "adapter_dir": str(adapter_dir.relative_to(ctx.run_dir))})
    return quality.mean


def _add_phases(trial, **seconds: float) -> None:
    """Where a trial's wall time goes, phase by phase (``bench/bench_sweep_cuda.py`` sums them)."""
    phases = dict(trial.user_attrs.get("phases", {}))
    for name, value in seconds.items():
        phases[name] = phases.get(name, 0.0) + value
    trial.set_user_attr("phases", phases)


def _finish(trial, ctx: TrialContext, started: float, notes: list[str]) -> None:
    seconds = time.perf_counter() - started
    phases = trial.user_attrs.get("phases", {})
    _add_phases(trial, other=max(0.0, seconds - sum(phases.values())))
    trial.set_user_attr("trial_seconds", seconds)
    trial.set_user_attr("trial_cost_usd", seconds / 3600 * ctx.price_per_hour)
    if notes:
        trial.set_user_attr("note", "; ".join(notes))


def objective(trial, ctx: TrialContext) -> float:
    """``run_trial`` with the reason of any failure recorded on the trial, for results.json."""
    import optuna

    try:
        trial.set_user_attr("torch_threads", fit_threads(ctx.kit.device))  # the cores others leave free now
        return run_trial(trial, ctx)
    except optuna.TrialPruned:
        raise
    except KeyboardInterrupt:  # in training, validation or saving alike: the trial is retried on resume
        _set_attrs(trial, {"interrupted": True, "note": "interrupted (Ctrl-C); `advise tune --resume` retries it"})
        raise
    except Exception as e:
        if "note" not in trial.user_attrs:
            first = first_line(e)
            trial.set_user_attr("note", first if isinstance(e, TrialFailed) else f"{type(e).__name__}: {first}")
        raise


def same_configuration(trial):
    """An earlier finished (complete or pruned) trial with exactly these parameters, if any.
    Retries of failed or interrupted trials have no finished twin, so they still run."""
    from optuna.trial import TrialState

    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.number != trial.number and t.params == trial.params and "duplicate_of" not in t.user_attrs:
            return t
    return None


def _set_attrs(trial, attrs: dict) -> None:
    for k, v in attrs.items():
        trial.set_user_attr(k, v)


def _param_text(v) -> str:
    return f"{v:.2g}" if isinstance(v, float) else str(v)
