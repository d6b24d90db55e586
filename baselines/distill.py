"""Distillation: the usual path from an API bill to a small model. A ``compare:`` endpoint with
``distill: all`` writes the answer of every training input (with the task's prompt); with
``distill: missing`` only of the training inputs that have no output (``Splits.unlabeled``), the
other records keeping their own. The answers and what they cost are kept in
``runs/<name>/distill/``, and a pilot trained on them is measured as its own candidate,
``finetune-distilled@<name>``, beside the plain pilot: the verdict then says whether
distillation closes the gap to the compared model.

The teacher's answers are cached like every endpoint answer, so a re-run pays nothing again; their
cost is the candidate's one-off cost (with its training time).
"""
from __future__ import annotations

import json
from dataclasses import replace

from foundation.endpoints import safe_name
from foundation.generation import generate, task_messages, task_prompts
from baselines.base import RunContext, register_baseline
from baselines.finetune import Pilot, _stage_text, train_pilot


def teacher(task):
    return next((m for m in task.compare if m.distill != "off"), None)


@register_baseline("distill", order=5, kind="Fine-tuned on a compared model's answers (distillation)",
                   headline="Distil the compared model", fine_tuned=True,
                   action="Fine-tune the model on answers the compared model wrote for your training inputs, "
                          "and ship the small model.",
                   when=lambda task: teacher(task) is not None and task.baselines.finetune.enabled)
def run_distill(ctx: RunContext):
    task, cfg = ctx.task, teacher(ctx.task)
    if ctx.splits.kind != "sft":
        ctx.extras.setdefault("not_measured", []).append(
            "distill: distillation writes answers for input → output records; this data is preference data.")
        return []
    if cfg.distill == "missing" and not ctx.splits.unlabeled:
        ctx.extras.setdefault("not_measured", []).append(
            f"finetune-distilled@{cfg.name}: distill: missing, but every training record has its output; "
            "nothing for the teacher to answer (distill: all answers every training input).")
        return []
    train, report = distilled_train(ctx, cfg)
    if not train:
        ctx.extras.setdefault("not_measured", []).append(
            f"finetune-distilled@{cfg.name}: the teacher wrote no non-empty answer; nothing to train on.")
        return []
    tok = ctx.tokenizer
    prompts = task_prompts(tok, task.prompt, ctx.splits.eval)
    pilot = Pilot(
        name=f"finetune-distilled@{cfg.name}", baseline="distill", adapter=f"distilled-{safe_name(cfg.name)}",
        label=f"Pilot fine-tune on {cfg.name}'s answers (LoRA)", eval_prompts=prompts,
        answer_one=lambda model, i: generate(model, tok, [prompts[i]], task.generation, batch_size=1),
        describe=lambda config, steps: (f"pilot LoRA r={config.params['rank']} {_stage_text(config)} on "
                                        + (f"{len(train)} records, {len(train) - report['own_outputs']} of them "
                                           "answered" if report["own_outputs"] else f"{len(train)} answers")
                                        + f" by {cfg.name} ({cfg.model}), {steps} steps"))
    splits = replace(ctx.splits, train=train)
    candidate = train_pilot(replace(ctx, splits=splits), pilot)
    ctx.extras.setdefault("splits", {})[candidate.name] = splits  # the study tunes on them when it wins
    candidate.details["distillation"] = report
    if report["cost_usd"] is not None:
        candidate.one_off_cost_usd += report["cost_usd"]
    return [candidate]


def distilled_train(ctx: RunContext, cfg) -> tuple[list, dict]:
    """The training records with the teacher's answers as outputs (empty answers dropped), and the
    report: how many, billed tokens, cost, where they are kept."""
    from foundation.endpoints import EndpointModel, endpoint_for

    task = ctx.task
    # all: every training input, the unlabeled ones too; missing: only those without an output
    records = ctx.splits.unlabeled if cfg.distill == "missing" else ctx.splits.train + ctx.splits.unlabeled
    kept = ctx.splits.train if cfg.distill == "missing" else []  # records trained on with their own outputs
    model = EndpointModel(endpoint_for(task, cfg.name, "distill"))
    conversations = [task_messages(task.prompt, r) for r in records]
    with ctx.progress.task(f"{cfg.name} writes {len(records)} training answers", total=len(records)) as advance:
        gens = model.answer(conversations, task.generation, on_batch=advance)
    replies = gens.replies
    fresh = [r for r in replies if not r.cached]
    folder = ctx.run_dir / "distill"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe_name(cfg.name)}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for r, reply in zip(records, replies):
            f.write(json.dumps({"input": r.input, "output": reply.text, "reference": r.output,
                                "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens},
                               ensure_ascii=False) + "\n")
    cost = model.cost(replies)
    report = {"teacher": cfg.name, "teacher_model": cfg.model, "inputs": cfg.distill, "answers": len(replies),
              "own_outputs": len(kept),
              "empty_answers": sum(not reply.text for reply in replies), "from_cache": len(replies) - len(fresh),
              "prompt_tokens": sum(r.prompt_tokens or 0 for r in replies),
              "completion_tokens": sum(r.completion_tokens or 0 for r in replies),
              "cost_usd": cost, "priced": cost is not None, "answers_file": str(path.relative_to(ctx.run_dir))}
    (folder / f"{safe_name(cfg.name)}.summary.json").write_text(json.dumps(report, indent=2))
    train = kept + [replace(r, output=reply.text) for r, reply in zip(records, replies) if reply.text]
    return train, report


def reload_distilled(splits, run_dir, candidate):
    """``advise tune`` after a distilled pilot won: the train split with the answers the teacher wrote
    (kept in the run folder by ``advise run``), so the study tunes on what the winner trained on."""
    from foundation.errors import AdviseError
    from foundation.paths import display_path

    report = candidate.details.get("distillation") or {}
    path = run_dir / report.get("answers_file", "distill/missing.jsonl")
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        answers = {row["input"]: row["output"] for row in rows}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AdviseError(f"{candidate.name} won on answers written by {report.get('teacher', 'the teacher')}, "
                          f"which this file should hold and does not ({type(e).__name__}); run `advise run` again "
                          "to write them", file=display_path(path)) from None
    # The teacher's answer where it wrote one (every input with distill: all, the unlabeled ones with
    # missing); a record it did not answer keeps its own output, if it has one.
    outputs = [(r, answers.get(r.input, r.output)) for r in splits.train + splits.unlabeled]
    train = [replace(r, output=output) for r, output in outputs if output]
    if not train:
        raise AdviseError("none of its answers belongs to a training input of this task; run `advise run` again",
                          file=display_path(path))
    return replace(splits, train=train)

