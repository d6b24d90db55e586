"""Pilot fine-tune baseline: a fixed trial of the tuner's LoRA method (TRL + PEFT) on train,
evaluated on the eval split with the task prompt. Its :class:`TrialConfig` is recorded on the
candidate, and the study runs it first when fine-tuning wins.

The pilot's objective follows the data: SFT on input → output records; SFT on the chosen answers
then DPO on paired preference data; SFT then KTO on unpaired data (``baselines.finetune.objective``
picks another). While training it scores the validation split at a third, two thirds and the end
of its steps, and trains on while that learning curve still rises (``training.curve``).

:func:`train_pilot` is shared with the FT + RAG candidate (``baselines.finetune_rag``), which
differs only in the prompts it trains and answers with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from foundation.generation import generate, task_prompts
from foundation.measure import CandidateRun, measure_candidate
from foundation.results import TrialConfig
from baselines.base import RunContext, register_baseline

PILOT_OBJECTIVE = {"sft": "sft", "preference": "sft+dpo", "unpaired": "sft+kto"}  # by data kind


def pilot_objective(task, kind: str) -> str:
    """The objective the pilot trains with on data of ``kind`` (``foundation.data.Splits.kind``)."""
    chosen = task.baselines.finetune.objective
    return PILOT_OBJECTIVE.get(kind, "sft") if chosen == "auto" else chosen


def pilot_config(task, max_seq_length: int, objective: str = "sft") -> TrialConfig:
    """``baselines.finetune`` as the configuration of a LoRA trial (``max_seq_length`` resolved:
    ``training.lengths.training_length``)."""
    cfg = task.baselines.finetune
    return TrialConfig(method="lora", objective=objective, params={
        "rank": cfg.rank, "alpha": cfg.alpha, "dropout": 0.0, "target_modules": cfg.target_modules,
        "learning_rate": cfg.learning_rate, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "warmup_ratio": 0.0, "weight_decay": 0.0,
    }, max_steps=cfg.max_steps, max_seq_length=max_seq_length, time_budget_s=cfg.time_budget_s)


@dataclass
class Pilot:
    """What one pilot trains on and answers with."""

    name: str  # the candidate's name
    baseline: str
    adapter: str  # its folder under adapters/
    label: str  # the progress bar's
    eval_prompts: list[str]  # the eval split's rendered prompts
    answer_one: Callable  # (model, i) -> answers eval example i alone (retrieval included)
    describe: Callable[[TrialConfig, int], str]  # (config, steps trained) -> the candidate's description
    train_messages: Callable | None = None  # record -> training prompt messages (None: the task's)
    validation_messages: Callable | None = None  # record -> validation prompt messages (None: the task's)
    extra_seconds: float = 0.0  # batch work outside generation (retrieval for all eval queries)
    length_key: str = "baselines.finetune.max_seq_length"
    own_length: bool = False  # derive the sequence length from its own records, whatever the task sets
    max_steps: int | None = None  # its own step limit (None: baselines.finetune.max_steps)


def train_pilot(ctx: RunContext, pilot: Pilot):
    """Train the pilot, follow its learning curve, save it, measure it on eval."""
    from foundation.metrics import METRICS
    from foundation.models import resolve_model
    from training.artifacts import save_trial
    from training.curve import LearningCurve, checkpoints
    from training.evaluate import Evaluator
    from training.lengths import record_token_lengths, training_length
    from training.modelfacts import model_facts
    from training.trial import TrainingKit, planned_steps, train_config, trial_record

    task, cfg, splits = ctx.task, ctx.task.baselines.finetune, ctx.splits
    fit = training_length(record_token_lengths(ctx.tokenizer, task.prompt, splits.train, pilot.train_messages),
                          None if pilot.own_length else cfg.max_seq_length, ctx.model.config, pilot.length_key)
    config = pilot_config(task, fit.max_seq_length, pilot_objective(task, splits.kind))
    if pilot.max_steps is not None:
        config = config.model_copy(update={"max_steps": pilot.max_steps})
    kit = TrainingKit(task=task, records=splits.train, device=ctx.device,
                      source=resolve_model(task.model, task.base_dir), tokenizer=ctx.tokenizer,
                      facts=model_facts(ctx.model, ctx.device), progress=ctx.progress,
                      messages_for=pilot.train_messages, validation=splits.validation, run_dir=ctx.run_dir)
    embedder = ctx.embedder if METRICS[task.metric.name].needs_embedder else None
    curve = None
    if splits.validation:
        records = splits.validation[: cfg.curve_records]  # on a CPU in one batch: decoding runs once for all
        curve = LearningCurve(Evaluator(task, ctx.tokenizer, records, embedder, messages_for=pilot.validation_messages,
                                        batch_size=len(records) if ctx.device == "cpu" else None).scores)
    # The pilot's batch is its micro-batch: no accumulation unless memory forces it.
    batch = int(config.params["batch_size"])
    trained = train_config(config, kit, micro_batch_size=batch,
                           label=f"{pilot.label} ({config.objective})" if config.objective != "sft" else pilot.label,
                           make_callback=(lambda: curve.callback(checkpoints(planned_steps(config, kit, batch))))
                           if curve else None)
    result = trained.result
    cut_short = cut_short_reason(result, trained.planned_steps)
    if curve is not None:
        curve.cut_short = cut_short
        result = trained.result = _follow_curve(curve, trained, kit, task)
    adapter_dir = ctx.out_dir / "adapters" / pilot.adapter
    save_trial(adapter_dir, trained.method, result.model, trained.init_dir, trial_record(task, config, None),
               ctx.tokenizer)
    train_seconds = max(0.0, result.train_seconds - (curve.eval_seconds - curve.outside_seconds if curve else 0.0))
    details = _details(config, fit, result, trained, train_seconds, pilot.length_key)
    details["adapter_dir"] = str(adapter_dir.relative_to(ctx.run_dir))
    details["cut_short"] = cut_short
    details["learning_curve"] = curve.to_dict(task.verdict.min_gain) if curve else {
        "steps": [], "validation": [], "still_improving": False, "extended_steps": 0,
        "stopped": "no validation split to score (fewer than 10 train records or data.validation_fraction is 0)"}
    candidate = measure_candidate(ctx, CandidateRun(
        name=pilot.name, baseline=pilot.baseline, description=pilot.describe(config, result.steps),
        model=result.model, prompts=pilot.eval_prompts, answer_one=lambda i: pilot.answer_one(result.model, i),
        details=details, one_off_seconds=train_seconds, extra_seconds=pilot.extra_seconds, config=config))
    candidate.peak_memory_mb = max(candidate.peak_memory_mb, trained.peak_memory_mb)
    return candidate


def cut_short_reason(result, planned: int) -> str:
    """Why a pilot trained fewer than its ``planned`` steps, with how many it did ("" when it did them all)."""
    if result.steps >= planned or result.stopped_reason.startswith("completed"):
        return ""
    return f"cut short after {result.steps} of {planned} planned steps ({result.stopped_reason})"


def _follow_curve(curve, trained, kit, task):
    """Score the last step (when the time budget stopped training between points), note a run cut
    short, and train on while the curve rises beyond noise; returns the final TrainResult."""
    from training.curve import extend_while_rising

    result, cfg = trained.result, task.baselines.finetune
    if not curve.points or curve.points[-1][0] != result.steps:  # stopped early (time budget)
        curve.score(result.steps, result.model, in_training=False)
    return extend_while_rising(trained, kit, curve, min_gain=task.verdict.min_gain,
                               max_extensions=cfg.max_extensions, time_budget_s=cfg.time_budget_s)


def _details(config: TrialConfig, fit, result, trained, train_seconds: float, key: str) -> dict:
    from training.objectives import OBJECTIVES

    details = {"method": config.method, "objective": config.objective,
               "stages": list(result.details.get("stages") or OBJECTIVES[config.objective].stages),
               **config.params, "max_steps": config.max_steps, "max_seq_length": config.max_seq_length,
               "sequence_length": fit.describe(key), "records_truncated": fit.truncated,
               "records_dropped": fit.dropped, "steps": result.steps, "train_seconds": train_seconds,
               "tokens_seen": result.tokens_seen,
               "tokens_per_second": result.tokens_seen / train_seconds if train_seconds > 0 else 0.0,
               "final_loss": result.final_loss, "trainable_params": result.trainable_params,
               "total_params": result.total_params, "stopped": result.stopped_reason,
               "planned_steps": trained.planned_steps,
               "train_peak_memory_mb": trained.peak_memory_mb}
    extra = {k: v for k, v in result.details.items() if k != "stages"}
    if extra:
        details["training"] = extra
    if trained.notes:
        details["notes"] = trained.notes
    return details


def _stage_text(config: TrialConfig) -> str:
    from training.objectives import OBJECTIVES

    return " then ".join(s.upper() for s in OBJECTIVES[config.objective].stages)


@register_baseline("finetune", order=2, kind="Fine-tuned model", headline="Fine-tune", fine_tuned=True,
                   action="Fine-tune the model: prompting and retrieval are not good enough for this task.")
def run_finetune(ctx: RunContext):
    task, tok = ctx.task, ctx.tokenizer
    prompts = task_prompts(tok, task.prompt, ctx.splits.eval)
    n = len(ctx.splits.train)
    pilot = Pilot(
        name="finetune", baseline="finetune", adapter="pilot", label="Pilot fine-tune (LoRA)", eval_prompts=prompts,
        answer_one=lambda model, i: generate(model, tok, [prompts[i]], task.generation, batch_size=1),
        describe=lambda config, steps: (f"pilot LoRA r={config.params['rank']} {_stage_text(config)} on {n} train "
                                        f"examples, {steps} steps"))
    return [train_pilot(ctx, pilot)]
