"""Prompt building and batched generation, shared by every baseline and by training.

Training and evaluation build messages with the same function, so a fine-tuned model sees at
inference exactly the prompt layout it was trained on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from advisor.data import Record


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


@dataclass
class Generations:
    texts: list[str]
    prompt_tokens: list[int]
    answer_tokens: list[int]
    seconds: float

    @property
    def throughput_qps(self) -> float:
        return len(self.texts) / self.seconds if self.seconds > 0 else 0.0


def _generate_kwargs(tokenizer, gen) -> dict:
    kwargs = dict(max_new_tokens=gen.max_new_tokens, do_sample=gen.do_sample, use_cache=True,
                  pad_token_id=tokenizer.pad_token_id)
    if gen.do_sample:
        kwargs["temperature"] = gen.temperature
    return kwargs


def generate(model, tokenizer, prompts: list[str], gen, batch_size: int | None = None, on_batch=None) -> Generations:
    """Generate answers for ``prompts`` in batches (left padding, KV cache).

    Prompts are sorted by length so each batch pads little; results come back in input order.
    ``on_batch(n)`` is called after each batch with the number of prompts done in it.
    """
    import torch

    batch_size = batch_size or gen.batch_size
    tokenizer.padding_side = "left"
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    texts: list[str] = [""] * len(prompts)
    answer_tokens = [0] * len(prompts)
    device = next(model.parameters()).device
    kwargs = _generate_kwargs(tokenizer, gen)
    start = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            out = model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            for row, i in enumerate(idx):
                ids = _strip_after_eos(new[row].tolist(), tokenizer)
                answer_tokens[i] = len(ids)
                texts[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
            if on_batch:
                on_batch(len(idx))
    return Generations(texts, lengths, answer_tokens, time.perf_counter() - start)


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
