"""Pilot fine-tune baseline: a short LoRA SFT (TRL + PEFT) on train, evaluated with the task prompt."""
from __future__ import annotations

from advisor.generation import build_messages, generate, render_prompt
from advisor.measure import CandidateRun, measure_candidate
from baselines.base import RunContext, register_baseline


def pilot_config(task) -> dict:
    cfg = task.baselines.finetune
    return {"method": "lora", "rank": cfg.rank, "alpha": cfg.alpha, "learning_rate": cfg.learning_rate,
            "target_modules": cfg.target_modules, "max_steps": cfg.max_steps, "epochs": cfg.epochs,
            "batch_size": cfg.batch_size, "max_seq_length": cfg.max_seq_length}


def lora_config(task):
    from peft import LoraConfig

    cfg = task.baselines.finetune
    targets = cfg.target_modules if cfg.target_modules == "all-linear" else [
        m.strip() for m in cfg.target_modules.split(",") if m.strip()]
    return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=targets,
                      task_type="CAUSAL_LM")


@register_baseline("finetune")
def run_finetune(ctx: RunContext):
    from advisor.models import load_model, resolve_model
    from tuner.training import TrainSettings, train_sft

    task, cfg = ctx.task, ctx.task.baselines.finetune
    # A fresh copy of the base model: the other baselines keep using the untouched one.
    base = load_model(resolve_model(task.model, task.base_dir), device=ctx.device,
                      trust_remote_code=task.trust_remote_code, seed=task.seed)
    settings = TrainSettings(max_steps=cfg.max_steps, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                             batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length,
                             time_budget_s=cfg.time_budget_s, seed=task.seed,
                             output_dir=str(ctx.run_dir / "adapters" / ".trainer"))
    from advisor.resources import PeakMemory
    from tuner.training import plan_steps

    with ctx.progress.task("Pilot fine-tune (LoRA)", total=plan_steps(len(ctx.splits.train), settings)) as advance:
        with PeakMemory(ctx.device) as mem:
            result = train_sft(base, ctx.tokenizer, ctx.splits.train, system=task.prompt.system,
                               template=task.prompt.template, settings=settings, adapter=lora_config(task),
                               device=ctx.device, on_step=lambda step, total: advance())
    adapter_dir = ctx.run_dir / "adapters" / "pilot"
    result.model.save_pretrained(adapter_dir)
    ctx.extras["pilot"] = {"config": pilot_config(task), "adapter_dir": str(adapter_dir)}
    model, tok = result.model, ctx.tokenizer
    prompts = [render_prompt(tok, build_messages(r, task.prompt.system, task.prompt.template.format(input=r.input)))
               for r in ctx.splits.eval]

    def answer_one(i):
        return generate(model, tok, [prompts[i]], task.generation, batch_size=1)

    details = {**pilot_config(task), "steps": result.steps, "train_seconds": result.train_seconds,
               "tokens_seen": result.tokens_seen, "tokens_per_second": result.tokens_per_second,
               "final_loss": result.final_loss, "trainable_params": result.trainable_params,
               "total_params": result.total_params, "stopped": result.stopped_reason,
               "train_peak_memory_mb": mem.peak_mb, "adapter_dir": str(adapter_dir.relative_to(ctx.run_dir))}
    candidate = measure_candidate(ctx, CandidateRun(
        name="finetune", baseline="finetune",
        description=f"pilot LoRA r={cfg.rank} on {len(ctx.splits.train)} train examples, {result.steps} steps",
        model=model, prompts=prompts, answer_one=answer_one, details=details, one_off_seconds=result.train_seconds))
    candidate.peak_memory_mb = max(candidate.peak_memory_mb, mem.peak_mb)
    del model, base
    return [candidate]
