"""FT + RAG: the pilot fine-tune trained with retrieved context in its prompts and answering with
retrieval, measured beside RAG and the plain pilot (fine-tuning and retrieval gains add up on
knowledge tasks in published comparisons; few tools measure the combination).

Training prompts are RAFT-style: the chunks RAG retrieves for each training question, plus
``baselines.finetune_rag.distractors`` random chunks, in a seeded shuffled order, so the model
learns to use relevant context and to ignore the rest. Without a corpus, RAG's retrieval
few-shot is used: each training question gets its nearest *other* training examples as
demonstrations. Evaluation uses exactly RAG's prompts. It is a fine-tuned option under the
verdict rule (the last resort), with the pilot's settings (``baselines.finetune``) except the
sequence length, which is derived from its own, longer, records.
"""
from __future__ import annotations

import random
import time

from foundation.generation import generate, render_prompt
from baselines.base import RunContext, register_baseline
from baselines.finetune import Pilot, _stage_text, train_pilot
from training.trial import TrialPrompts


def training_hits(retrieval, records, distractors: int, seed: int, exclude_self: bool) -> list[list[int]]:
    """Context items for each training record: its retrieved items (never itself, for retrieval
    few-shot) and ``distractors`` random others, shuffled."""
    rng = random.Random(seed)
    k = retrieval.k
    found = retrieval.search([r.input for r in records], k + 1 if exclude_self else k)
    out = []
    for i, hits in enumerate(found):
        hits = [j for j in hits if not (exclude_self and j == i)][:k]
        others = [j for j in range(len(retrieval.items)) if j not in hits and not (exclude_self and j == i)]
        picked = hits + rng.sample(others, min(distractors, len(others)))
        rng.shuffle(picked)
        out.append(picked)
    return out


@register_baseline("finetune_rag", order=3, kind="Fine-tuned model with retrieval (FT + RAG)",
                   headline="Fine-tune and retrieve (FT + RAG)", fine_tuned=True, needs=("rag", "finetune"),
                   action="Fine-tune the model on prompts with retrieved context and ship it with retrieval: "
                          "neither prompting, retrieval nor fine-tuning alone is good enough.")
def run_finetune_rag(ctx: RunContext):
    from training.lengths import NothingToLearn

    retrieval = ctx.extras.get("retrieval")
    if retrieval is None or not retrieval.items:
        return []
    try:
        return [train_pilot(ctx, hybrid_pilot(ctx, retrieval))]
    except NothingToLearn as e:  # long inputs times top_k: the rest of the run still stands
        what = "corpus chunks" if retrieval.kind == "corpus" else "similar training examples"
        ctx.extras.setdefault("not_measured", []).append(
            f"FT + RAG was not measured: with the top-{retrieval.k} {what} in each prompt, every training prompt is "
            f"longer than the {e.fit.max_seq_length}-token training limit (the shortest takes {e.fit.shortest_prompt} "
            "tokens); lower baselines.rag.top_k" + (" or baselines.rag.chunk_tokens" if retrieval.kind == "corpus" else "")
            + " to measure it")
        return []


def study_prompts(ctx: RunContext) -> TrialPrompts:
    """The FT + RAG prompts for a study started by ``advise tune`` after FT + RAG won: the same
    retriever (its index reused from the run) and the same RAFT-style training prompts."""
    from baselines.rag import build_retrieval

    retrieval, _, _ = build_retrieval(ctx)
    return _prompts(ctx, retrieval)[0]


def _prompts(ctx: RunContext, retrieval) -> tuple[TrialPrompts, float]:
    """Training (retrieved + distractors), validation and eval prompt messages, and the seconds the
    eval split's retrieval took."""
    task, splits = ctx.task, ctx.splits
    few_shot = retrieval.kind != "corpus"  # the train records are the items: a record must not see itself
    train_hits = training_hits(retrieval, splits.train, task.baselines.finetune_rag.distractors, task.seed, few_shot)
    by_record = {id(r): h for r, h in zip(splits.train, train_hits)}
    validation_hits = dict(zip(map(id, splits.validation), retrieval.search([r.input for r in splits.validation])))
    start = time.perf_counter()
    eval_hits = retrieval.search([r.input for r in splits.eval])
    retrieval_seconds = time.perf_counter() - start
    by_eval = dict(zip(map(id, splits.eval), eval_hits))
    prompts = TrialPrompts(train=lambda r: retrieval.messages(r, by_record[id(r)]),
                           validation=lambda r: retrieval.messages(r, validation_hits[id(r)]),
                           eval=lambda r: retrieval.messages(r, by_eval[id(r)]))
    return prompts, retrieval_seconds


def hybrid_pilot(ctx: RunContext, retrieval) -> Pilot:
    """The FT + RAG pilot: RAFT-style training prompts, RAG's prompts for validation and eval."""
    task, tok, splits = ctx.task, ctx.tokenizer, ctx.splits
    trial_prompts, retrieval_seconds = _prompts(ctx, retrieval)
    ctx.extras.setdefault("prompts", {})["finetune+rag"] = trial_prompts
    prompts = [render_prompt(tok, trial_prompts.eval(r)) for r in splits.eval]

    def answer_one(model, i):
        h = retrieval.search([splits.eval[i].input])[0]
        return generate(model, tok, [render_prompt(tok, retrieval.messages(splits.eval[i], h))], task.generation,
                        batch_size=1)

    what = "corpus chunks" if retrieval.kind == "corpus" else "similar training examples"
    return Pilot(
        name="finetune+rag", baseline="finetune_rag", adapter="pilot-rag", label="Pilot fine-tune with retrieved context (FT + RAG)",
        eval_prompts=prompts, answer_one=answer_one, extra_seconds=retrieval_seconds,
        train_messages=trial_prompts.train, validation_messages=trial_prompts.validation,
        describe=lambda config, steps: (
            f"pilot LoRA r={config.params['rank']} {_stage_text(config)} with the top-{retrieval.k} {what} "
            f"(+{task.baselines.finetune_rag.distractors} distractor) in each prompt, {steps} steps; answers with RAG"),
        own_length=True,  # retrieved context makes its records longer than the plain pilot's
        max_steps=task.baselines.finetune_rag.max_steps)
