"""Pilot fine-tune baseline: a fixed trial of the tuner's LoRA method (TRL + PEFT) on train,
evaluated on the eval split with the task prompt. Its :class:`TrialConfig` is recorded on the
candidate, and the study runs it first when fine-tuning wins."""
from __future__ import annotations

from foundation.generation import generate, task_prompts
from foundation.measure import CandidateRun, measure_candidate
from foundation.results import TrialConfig
from baselines.base import RunContext, register_baseline


def pilot_config(task, max_seq_length: int) -> TrialConfig:
    """``baselines.finetune`` as the configuration of a LoRA trial (``max_seq_length`` resolved:
    ``tuner.lengths.training_length``)."""
    cfg = task.baselines.finetune
    return TrialConfig(method="lora", params={
        "rank": cfg.rank, "alpha": cfg.alpha, "dropout": 0.0, "target_modules": cfg.target_modules,
        "learning_rate": cfg.learning_rate, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "warmup_ratio": 0.0, "weight_decay": 0.0,
    }, max_steps=cfg.max_steps, max_seq_length=max_seq_length, time_budget_s=cfg.time_budget_s)


@register_baseline("finetune", order=2, kind="Fine-tuned model", headline="Fine-tune", fine_tuned=True,
                   action="Fine-tune the model: prompting and retrieval are not good enough for this task.")
def run_finetune(ctx: RunContext):
    from foundation.models import resolve_model
    from tuner.artifacts import save_trial
    from tuner.lengths import record_token_lengths, training_length
    from tuner.modelfacts import model_facts
    from tuner.trial import TrainingKit, train_config, trial_record

    task = ctx.task
    fit = training_length(record_token_lengths(ctx.tokenizer, task.prompt, ctx.splits.train),
                          task.baselines.finetune.max_seq_length, ctx.model.config, "baselines.finetune.max_seq_length")
    config = pilot_config(task, fit.max_seq_length)
    kit = TrainingKit(task=task, records=ctx.splits.train, device=ctx.device,
                      source=resolve_model(task.model, task.base_dir), tokenizer=ctx.tokenizer,
                      facts=model_facts(ctx.model, ctx.device), progress=ctx.progress)
    # The pilot's batch is its micro-batch: no accumulation unless memory forces it.
    trained = train_config(config, kit, micro_batch_size=int(config.params["batch_size"]),
                           label="Pilot fine-tune (LoRA)")
    adapter_dir = ctx.run_dir / "adapters" / "pilot"
    save_trial(adapter_dir, trained.method, trained.model, trained.init_dir, trial_record(task, config, None),
               ctx.tokenizer)
    model, tok, result = trained.model, ctx.tokenizer, trained.result
    prompts = task_prompts(tok, task.prompt, ctx.splits.eval)

    def answer_one(i):
        return generate(model, tok, [prompts[i]], task.generation, batch_size=1)

    details = {"method": config.method, **config.params, "max_steps": config.max_steps,
               "max_seq_length": config.max_seq_length, "sequence_length": fit.describe("baselines.finetune.max_seq_length"),
               "records_truncated": fit.truncated, "records_dropped": fit.dropped, "steps": result.steps, "train_seconds": result.train_seconds,
               "tokens_seen": result.tokens_seen, "tokens_per_second": result.tokens_per_second,
               "final_loss": result.final_loss, "trainable_params": result.trainable_params,
               "total_params": result.total_params, "stopped": result.stopped_reason,
               "train_peak_memory_mb": trained.peak_memory_mb,
               "adapter_dir": str(adapter_dir.relative_to(ctx.run_dir))}
    if trained.notes:
        details["notes"] = trained.notes
    candidate = measure_candidate(ctx, CandidateRun(
        name="finetune", baseline="finetune",
        description=f"pilot LoRA r={config.params['rank']} on {len(ctx.splits.train)} train examples, "
                    f"{result.steps} steps",
        model=model, prompts=prompts, answer_one=answer_one, details=details, one_off_seconds=result.train_seconds,
        config=config))
    candidate.peak_memory_mb = max(candidate.peak_memory_mb, trained.peak_memory_mb)
    return [candidate]
