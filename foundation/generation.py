"""Prompt building and batched generation, shared by every baseline and by training.

Training and evaluation build messages with the same function, so a fine-tuned model sees at
inference exactly the prompt layout it was trained on.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

from foundation.records import Record


def build_messages(record: Record, system: str, user_text: str, demos: list[Record] = ()) -> list[dict]:
    """System prompt, optional demonstrations as earlier turns, the record's history, the query."""
    messages = [{"role": "system", "content": record.system or system}]
    for d in demos:
        messages.append({"role": "user", "content": d.input})
        messages.append({"role": "assistant", "content": d.output})
    messages.extend(record.history)
    messages.append({"role": "user", "content": user_text})
    return messages


def render_prompt(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def task_messages(prompt, record: Record, demos: list[Record] = ()) -> list[dict]:
    """The task's prompt (``prompt:`` section) around one record: what every candidate and every
    training record is built from."""
    return build_messages(record, prompt.system, prompt.user_message(record.input), demos)


def task_prompts(tokenizer, prompt, records: list[Record], demos: list[Record] = ()) -> list[str]:
    """The rendered prompt text of every record, ready for :func:`generate`."""
    return [render_prompt(tokenizer, task_messages(prompt, r, demos)) for r in records]


@dataclass
class Generations:
    texts: list[str]
    prompt_tokens: list[int]
    answer_tokens: list[int]
    seconds: float
    replies: list | None = None  # an endpoint's replies (foundation.endpoints.Reply): usage, cache hits

    @property
    def throughput_qps(self) -> float:
        return len(self.texts) / self.seconds if self.seconds > 0 else 0.0


class LocalModel:
    """A model run in-process, behind the same interface as ``foundation.endpoints.EndpointModel``:
    ``answer(conversations, gen)`` turns chat messages into :class:`Generations`."""

    def __init__(self, name: str, model, tokenizer):
        self.name, self.model, self.tokenizer = name, model, tokenizer

    def answer(self, conversations: list[list[dict]], gen, on_batch=None, salt: str = "") -> Generations:
        prompts = [render_prompt(self.tokenizer, m) for m in conversations]
        return generate(self.model, self.tokenizer, prompts, gen, on_batch=on_batch)

    def cost(self, replies) -> float | None:
        return 0.0  # its compute is priced by the hour (foundation.costs), not per token


def _generate_kwargs(tokenizer, gen) -> dict:
    kwargs = dict(max_new_tokens=gen.max_new_tokens, do_sample=gen.do_sample, use_cache=True,
                  pad_token_id=tokenizer.pad_token_id)
    if gen.do_sample:
        kwargs["temperature"] = gen.temperature
    return kwargs


# Below this many shared tokens, running the prefix once saves less than copying its cache costs.
MIN_SHARED_PREFIX = 8


def generate(model, tokenizer, prompts: list[str], gen, batch_size: int | None = None, on_batch=None) -> Generations:
    """Generate answers for ``prompts`` in batches (left padding, KV cache).

    Prompts are sorted by length so each batch pads little; results come back in input order.
    The tokens every prompt starts with (system prompt, demonstrations, chat header) are run
    through the model once and their KV cache is reused by every batch; each row is then
    ``prefix + pads + own suffix`` with the pads masked out, so it attends to exactly what the
    unpadded prompt would (bench/bench_generation.py checks the answers match one-at-a-time
    ``generate``). Prompt-learning adapters get neither the cache nor padding (see ``_batches``).
    ``on_batch(n)`` is called after each batch with the number of prompts done in it.
    """
    import torch

    batch_size = batch_size or gen.batch_size
    tokenizer.padding_side = "left"
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    lengths = [len(x) for x in ids]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    texts: list[str] = [""] * len(prompts)
    answer_tokens = [0] * len(prompts)
    device = next(model.parameters()).device
    kwargs = _generate_kwargs(tokenizer, gen)
    plain = _can_reuse_cache(model)
    n_prefix = shared_prefix_length(ids) if len(ids) > 1 and plain else 0
    pad = tokenizer.pad_token_id
    start = time.perf_counter()
    with torch.inference_mode():
        prefix_cache = _prefill(model, ids[0][:n_prefix], device) if n_prefix else None
        for idx in _batches(order, lengths, batch_size, pad_free=not plain):
            width = max(lengths[i] for i in idx) - n_prefix
            rows = [ids[i][n_prefix:] for i in idx]
            input_ids = torch.tensor([ids[i][:n_prefix] + [pad] * (width - len(r)) + r for i, r in zip(idx, rows)],
                                     device=device)
            mask = torch.tensor([[1] * n_prefix + [0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
            extra = {}
            if prefix_cache is not None:
                extra["past_key_values"] = cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(idx))
            out = model.generate(input_ids=input_ids, attention_mask=mask, **kwargs, **extra)
            new = out[:, input_ids.shape[1]:]
            for row, i in enumerate(idx):
                toks = _strip_after_eos(new[row].tolist(), tokenizer)
                answer_tokens[i] = len(toks)
                texts[i] = tokenizer.decode(toks, skip_special_tokens=True).strip()
            if on_batch:
                on_batch(len(idx))
    return Generations(texts, lengths, answer_tokens, time.perf_counter() - start)


def _batches(order: list[int], lengths: list[int], batch_size: int, pad_free: bool) -> list[list[int]]:
    """Consecutive slices of ``order``; with ``pad_free`` only prompts of one length share a batch.
    PEFT's prompt learning ignores position ids, so a left-padded row would see shifted positions
    and answer differently than it does alone."""
    if not pad_free:
        return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    out: list[list[int]] = []
    for i in order:
        if out and len(out[-1]) < batch_size and lengths[out[-1][0]] == lengths[i]:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def shared_prefix_length(ids: list[list[int]]) -> int:
    """Tokens all prompts share at the start, leaving every prompt at least one token of its own
    (generation needs one uncached input token); 0 when too short to be worth caching."""
    n = min(len(os.path.commonprefix(ids)), min(map(len, ids)) - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


def _can_reuse_cache(model) -> bool:
    """Prompt tuning, prefix tuning and P-tuning put their own virtual tokens or key/values in
    front of the prompt inside ``generate``; a precomputed cache would skip them."""
    config = getattr(model, "active_peft_config", None)
    return not (config is not None and getattr(config, "is_prompt_learning", False))


def _prefill(model, prefix: list[int], device):
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([prefix], device=device), past_key_values=cache, use_cache=True)
    return cache


def _strip_after_eos(ids: list[int], tokenizer) -> list[int]:
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for n, t in enumerate(ids):
        if t in stops:
            return ids[:n]
    return ids


def time_single_queries(answer_one, queries: list, n: int) -> list[float]:
    """Latency per query at batch 1, in ms: ``answer_one(query)`` does the whole work
    (retrieval included for RAG). One warm-up call is not timed."""
    if not queries:
        return []
    picked = [queries[i % len(queries)] for i in range(n)]
    answer_one(picked[0])
    times = []
    for q in picked:
        t0 = time.perf_counter()
        answer_one(q)
        times.append((time.perf_counter() - t0) * 1000)
    return times
