"""Prompt-only baseline: the base model with the task's prompt, zero-shot and few-shot."""
from __future__ import annotations

import random

from foundation.generation import generate, task_prompts
from foundation.measure import CandidateRun, measure_candidate
from baselines.base import RunContext, register_baseline


def pick_demos(train, k: int, seed: int):
    """k fixed demonstrations from train, the same for every query (seeded)."""
    if k <= 0 or not train:
        return []
    rng = random.Random(seed)
    return rng.sample(list(train), min(k, len(train)))


def prompt_candidate(ctx: RunContext, name: str, demos, description: str) -> CandidateRun:
    task, tok = ctx.task, ctx.tokenizer
    prompts = task_prompts(tok, task.prompt, ctx.splits.eval, demos)

    def answer_one(i):
        return generate(ctx.model, tok, [prompts[i]], task.generation, batch_size=1)

    return CandidateRun(name=name, baseline="prompt", description=description, model=ctx.model,
                        prompts=prompts, answer_one=answer_one, details={"few_shot_k": len(demos)})


@register_baseline("prompt", order=0, kind="Prompt only", headline="Prompting is enough",
                   action="Ship the base model with a good prompt; no retrieval and no fine-tuning are needed.")
def run_prompt(ctx: RunContext):
    cfg = ctx.task.baselines.prompt
    out = [ctx.reusable("prompt-zero-shot") or measure_candidate(
        ctx, prompt_candidate(ctx, "prompt-zero-shot", [], "base model, task prompt, no examples"))]
    demos = pick_demos(ctx.splits.train, cfg.few_shot_k, ctx.task.seed)
    if demos:
        out.append(measure_candidate(ctx, prompt_candidate(
            ctx, "prompt-few-shot", demos, f"base model, task prompt, {len(demos)} fixed examples from train")))
    return out
