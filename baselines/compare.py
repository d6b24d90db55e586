"""Other models as candidates (task.yaml's ``compare:``): each one answers with the prompt
candidates and RAG on the same eval split, with the same demonstrations and the same retrieved
chunks, scored by the same metric, so every comparison is paired per example. Never fine-tuned.

Candidates are named ``<candidate>@<model name>`` (``rag@gpt-4.1-mini``) and keep the baseline
they repeat (``prompt``, ``rag``), so the verdict's rule and simplicity order apply unchanged.

- A **local model** (hub id or folder) runs in-process like the task's model and is priced the
  same way: measured compute at the hourly price.
- An **endpoint** is priced as the API bills it: the prompt and completion tokens each response
  reports (usage) at the task's per-million prices (no price: unpriced, NaN, never free).
  Latency p50/p95 is measured one request at a time; throughput at the entry's concurrency.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np

from foundation.generation import render_prompt, task_messages
from foundation.measure import CandidateRun, candidate_scores, measure_candidate, measure_quality, write_predictions
from foundation.results import CandidateResult, Latency, Tokens
from foundation.stats import percentile
from baselines.base import RunContext, register_baseline
from baselines.prompt import pick_demos


def candidate_prompts(ctx: RunContext) -> list[tuple[str, str, str, list, object]]:
    """(name, baseline, description, conversations, one(i) -> conversation of eval example i with
    its retrieval redone) for every candidate a compared model answers with."""
    task, records = ctx.task, ctx.splits.eval
    out = []
    if task.baselines.prompt.enabled:
        convs = [task_messages(task.prompt, r) for r in records]
        out.append(("prompt-zero-shot", "prompt", "task prompt, no examples", convs, convs.__getitem__))
        demos = pick_demos(ctx.splits.train, task.baselines.prompt.few_shot_k, task.seed)
        if demos:
            few = [task_messages(task.prompt, r, demos) for r in records]
            out.append(("prompt-few-shot", "prompt", f"task prompt, the same {len(demos)} examples as prompt-few-shot",
                        few, few.__getitem__))
    retrieval = ctx.extras.get("retrieval")
    if retrieval is not None:
        hits = retrieval.search([r.input for r in records])
        convs = [retrieval.messages(r, h) for r, h in zip(records, hits)]

        def one(i):
            return retrieval.messages(records[i], retrieval.search([records[i].input])[0])

        out.append(("rag", "rag", f"the same top-{retrieval.k} retrieved {'chunks' if retrieval.kind == 'corpus' else 'examples'} as rag",
                    convs, one))
    return out


@register_baseline("compare", order=4, kind="Another model", headline="Use another model",
                   action="Ship the compared model with this prompt (or retrieval); no fine-tuning is needed.",
                   when=lambda task: bool(task.compare))
def run_compare(ctx: RunContext) -> list[CandidateResult]:
    if ctx.splits.kind != "sft":
        ctx.extras.setdefault("not_measured", []).append(
            "compare: the other models are not measured on preference data (an endpoint reports no likelihoods).")
        return []
    out = []
    for cfg in ctx.task.compare:
        if cfg.kind == "local":
            out.extend(_local_candidates(ctx, cfg))
        else:
            out.extend(_endpoint_candidates(ctx, cfg))
    return out


def _local_candidates(ctx: RunContext, cfg) -> list[CandidateResult]:
    from foundation.errors import AdviseError
    from foundation.generation import generate
    from foundation.models import load_model, load_tokenizer, resolve_model
    from foundation.paths import display_path

    index = ctx.task.compare.index(cfg)
    try:
        source = resolve_model(cfg.model, ctx.task.base_dir)
        with ctx.progress.task(f"Loading model {cfg.model}", total=None):
            tok = load_tokenizer(source, ctx.task.trust_remote_code)
            model = load_model(source, device=ctx.device, trust_remote_code=ctx.task.trust_remote_code, seed=ctx.task.seed)
    except AdviseError:
        raise
    except Exception as e:
        raise AdviseError(f"cannot load model {cfg.model!r}: {str(e).splitlines()[0]}",
                          file=display_path(ctx.task.source_path), where=f"compare.{index}.model") from e
    other = replace(ctx, model=model, tokenizer=tok)
    out = []
    for base, baseline, description, convs, one in candidate_prompts(ctx):
        name = f"{base}@{cfg.name}"
        if (again := ctx.reusable(name)) is not None:
            out.append(again)
            continue
        prompts = [render_prompt(tok, m) for m in convs]
        out.append(measure_candidate(other, CandidateRun(
            name=name, baseline=baseline, description=f"{cfg.model}: {description}", model=model, prompts=prompts,
            answer_one=lambda i, one=one: generate(model, tok, [render_prompt(tok, one(i))], ctx.task.generation,
                                                   batch_size=1),
            details={"compared_model": cfg.model, "kind": "local"}, model_name=cfg.name)))
    return out


def _endpoint_candidates(ctx: RunContext, cfg) -> list[CandidateResult]:
    from foundation.endpoints import EndpointModel, endpoint_for

    model = EndpointModel(endpoint_for(ctx.task, cfg.name, "answers"))
    model.endpoint.api_key()  # a missing key is a one-line error before anything is sent
    out = []
    for base, baseline, description, convs, one in candidate_prompts(ctx):
        name = f"{base}@{cfg.name}"
        out.append(ctx.reusable(name) or measure_endpoint(ctx, model, name, baseline, f"{cfg.model}: {description}",
                                                          convs, one))
    return out


def measure_endpoint(ctx: RunContext, model, name: str, baseline: str, description: str, convs, one) -> CandidateResult:
    """Answer every eval example at the entry's concurrency, score, time single requests, price the
    tokens the API reported, save the predictions."""
    from foundation.endpoints import sampling

    task, records, endpoint = ctx.task, ctx.splits.eval, model.endpoint
    cfg = endpoint.cfg
    with ctx.progress.task(f"Evaluating {name} ({cfg.concurrency} requests at a time)", total=len(convs)) as advance:
        gens = model.answer(convs, task.generation, on_batch=advance)
    replies = gens.replies
    probe = CandidateRun(name=name, baseline=baseline, description=description, model=None, prompts=[],
                         answer_one=lambda i: None)
    scores, extra = candidate_scores(ctx, probe, gens.texts)
    latency, timed = _latency(ctx, name, endpoint, one, sampling(task.generation))
    qps, source = _throughput(replies, gens.seconds, cfg.concurrency)
    per_query = model.cost(replies)
    measured = model.cost(replies + timed)
    details = {"kind": "endpoint", "compared_model": cfg.model, "base_url": cfg.base_url, "concurrency": cfg.concurrency,
               "priced": per_query is not None, "price_per_million_input": cfg.price_per_million_input,
               "price_per_million_output": cfg.price_per_million_output, "throughput_source": source,
               "usage": {"prompt_tokens": sum(r.prompt_tokens or 0 for r in replies),
                         "completion_tokens": sum(r.completion_tokens or 0 for r in replies),
                         "reported": sum(r.prompt_tokens is not None for r in replies), "requests": len(replies),
                         "from_cache": sum(r.cached for r in replies)},
               "measurement_cost_usd": measured, **extra}
    predictions = ctx.out_dir / "predictions" / f"{name}.jsonl"
    write_predictions(predictions, records, gens.texts, scores)
    return CandidateResult(
        name=name, baseline=baseline, model=cfg.name, description=description, details=details,
        quality=measure_quality(task, scores), scores=scores, latency=latency, throughput_qps=qps,
        tokens=Tokens(prompt_mean=float(np.mean(gens.prompt_tokens)), answer_mean=float(np.mean(gens.answer_tokens))),
        cost_per_1k_usd=per_query / len(replies) * 1000 if per_query is not None and replies else math.nan,
        peak_memory_mb=0.0, predictions_file=str(predictions.relative_to(ctx.run_dir)))


def _latency(ctx, name: str, endpoint, one, params) -> tuple[Latency, list]:
    """Single requests one after another (concurrency 1), retrieval included; a request answered
    before (the run's cache) counts with the time it took then, and costs nothing again."""
    n, total = ctx.task.generation.latency_queries, len(ctx.splits.eval)
    times, replies = [], []
    with ctx.progress.task(f"Timing {name} one request at a time", total=n) as advance:
        for k in range(n):
            t0 = time.perf_counter()
            conv = one(k % total)
            prep = time.perf_counter() - t0
            reply = endpoint.complete(conv, params, salt=f"latency-{k}")
            times.append((prep + reply.seconds) * 1000)
            replies.append(reply)
            advance()
    fresh = [r for r in replies if not r.cached]
    return Latency(p50_ms=percentile(times, 50), p95_ms=percentile(times, 95), mean_ms=float(np.mean(times)),
                   n=len(times)), fresh


def _throughput(replies, seconds: float, concurrency: int) -> tuple[float, str]:
    """Answers per second at the configured concurrency: measured over the requests this run sent;
    when all came from the cache, estimated from the times they took when they were sent."""
    fresh = [r for r in replies if not r.cached]
    if fresh and seconds > 0:
        return len(fresh) / seconds, "measured" if len(fresh) == len(replies) else f"measured on {len(fresh)} new requests"
    mean = float(np.mean([r.seconds for r in replies])) if replies else 0.0
    return (concurrency / mean if mean > 0 else 0.0), "estimated from cached request times"
