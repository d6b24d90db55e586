"""Evaluation generation: our batched ``foundation.generation.generate`` vs one-at-a-time HF ``generate``.

Same model (bundled SmolLM2-135M-Instruct, fp32 on CPU), same ~32 chat prompts (ticket routing,
rendered with the product's ``build_messages`` + ``render_prompt``), greedy, same
``max_new_tokens``. Throughput = prompts per second over the whole set. The reference feeds
each prompt alone to ``model.generate`` (no padding). Latency at batch 1 is our ``generate``
called with one prompt at a time; each prompt's batch-1 call and reference call are timed
back to back, so both see the same machine load. Repetitions are interleaved and the medians
are reported. Outputs are compared: batched greedy can differ from single greedy because of
left padding (different positions/numerics), so the agreement rate is reported.

    python bench/bench_generation.py [--prompts 32] [--max-new-tokens 32] [--batch-size 16] [--reps 2]
"""
from __future__ import annotations

import argparse
import time

from common import (machine_line, median, percentile, print_table, quiet_libraries, synthetic_tickets, verdict,
                    write_result)

NAME = "generation"
TARGET = 5.0
SYSTEM = "You route customer support tickets. Answer with one queue name: account, billing, shipping or technical."
TEMPLATE = "Ticket: {input}\nQueue:"


def hf_single(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """The reference: one prompt, no padding, plain ``model.generate``."""
    import torch

    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                             pad_token_id=tokenizer.pad_token_id)
    ids = out[0, enc["input_ids"].shape[1]:].tolist()
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for n, t in enumerate(ids):
        if t in stops:
            ids = ids[:n]
            break
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--tag", default="", help="write bench/results/generation-<tag>.json instead")
    args = ap.parse_args(argv)
    quiet_libraries()
    import torch

    from foundation.config import GenerationConfig
    from foundation.generation import build_messages, generate, render_prompt, shared_prefix_length
    from foundation.models import load_model, load_tokenizer, resolve_model

    source = resolve_model("default")
    tokenizer = load_tokenizer(source)
    model = load_model(source, device="cpu")
    records = synthetic_tickets(args.prompts, seed=1)
    prompts = [render_prompt(tokenizer, build_messages(r, SYSTEM, TEMPLATE.format(input=r.input))) for r in records]
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    prompt_tokens = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]

    generate(model, tokenizer, prompts[:2], gen, batch_size=2)  # warm-up
    hf_single(model, tokenizer, prompts[0], args.max_new_tokens)

    batched_s, ref_s, single_ms, ref_ms = [], [], [], []
    batched_texts = single_texts = ref_texts = None
    answer_tokens = None
    for rep in range(args.reps):
        g = generate(model, tokenizer, prompts, gen, batch_size=args.batch_size)
        batched_s.append(g.seconds)
        batched_texts, answer_tokens = g.texts, g.answer_tokens
        total_ref = 0.0
        single_texts, ref_texts = [], []
        for p in prompts:
            t0 = time.perf_counter()
            s = generate(model, tokenizer, [p], gen, batch_size=1)
            single_ms.append((time.perf_counter() - t0) * 1000)
            single_texts.append(s.texts[0])
            t0 = time.perf_counter()
            ref_texts.append(hf_single(model, tokenizer, p, args.max_new_tokens))
            dt = time.perf_counter() - t0
            ref_ms.append(dt * 1000)
            total_ref += dt
        ref_s.append(total_ref)
        print(f"  rep {rep + 1}: batched {g.seconds:.1f} s, one-at-a-time reference {total_ref:.1f} s")

    n = len(prompts)
    ours_qps, ref_qps = n / median(batched_s), n / median(ref_s)
    ratio = ours_qps / ref_qps
    agree_batched = sum(a == b for a, b in zip(batched_texts, ref_texts)) / n
    agree_single = sum(a == b for a, b in zip(single_texts, ref_texts)) / n
    disagreements = [{"prompt_index": i, "batched": a, "single": b}
                     for i, (a, b) in enumerate(zip(batched_texts, ref_texts)) if a != b][:5]
    figures = {
        "ratio": ratio,
        "ours_batched_prompts_per_s": ours_qps,
        "reference_prompts_per_s": ref_qps,
        "ours_batched_seconds_median": median(batched_s),
        "reference_seconds_median": median(ref_s),
        "ours_batch1_latency_ms_p50": percentile(single_ms, 50),
        "ours_batch1_latency_ms_p95": percentile(single_ms, 95),
        "reference_latency_ms_p50": percentile(ref_ms, 50),
        "reference_latency_ms_p95": percentile(ref_ms, 95),
        "batch1_overhead_vs_reference_p50": percentile(single_ms, 50) / percentile(ref_ms, 50),
        "agreement_batched_vs_single": agree_batched,
        "agreement_batch1_vs_single": agree_single,
        "answer_tokens_mean": sum(answer_tokens) / n,
        "answer_tokens_max": max(answer_tokens),
        "prompt_tokens_mean": sum(prompt_tokens) / n,
        "prompt_tokens_min": min(prompt_tokens),
        "prompt_tokens_max": max(prompt_tokens),
        "shared_prefix_tokens": shared_prefix_length(
            [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]),
    }
    params = {"model": "bundled SmolLM2-135M-Instruct", "dtype": "float32", "device": "cpu",
              "prompts": n, "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
              "decoding": "greedy", "reps": args.reps, "torch_threads": torch.get_num_threads()}
    write_result(NAME + (f"-{args.tag}" if args.tag else ""), figures=figures, parameters=params, target={"throughput_ratio_min": TARGET},
                 raw={"batched_seconds": batched_s, "reference_seconds": ref_s, 
                      "disagreements": disagreements,
                      "sample_outputs": batched_texts[:5]})
    print(f"\ngeneration — {machine_line()}")
    print_table([
        (f"ours batched (bs {args.batch_size}) prompts/s", ours_qps),
        ("reference one-at-a-time prompts/s", ref_qps),
        ("ratio (throughput)", ratio),
        (f"target ≥ {TARGET}×", verdict(ratio, TARGET)),
        ("ours batch-1 latency p50 / p95 ms", f"{percentile(single_ms, 50):.0f} / {percentile(single_ms, 95):.0f}"),
        ("reference latency p50 / p95 ms", f"{percentile(ref_ms, 50):.0f} / {percentile(ref_ms, 95):.0f}"),
        ("answers agree batched vs single", f"{agree_batched:.0%}"),
        ("answers agree batch-1 vs single", f"{agree_single:.0%}"),
        ("answer tokens mean / max", f"{sum(answer_tokens) / n:.1f} / {max(answer_tokens)}"),
        ("shared prefix cached once (tokens)", figures["shared_prefix_tokens"]),
    ])
    return {"name": NAME, "headline": f"{ratio:.2f}× one-at-a-time ({ours_qps:.2f} vs {ref_qps:.2f} prompts/s); "
                                      f"p50/p95 {percentile(single_ms, 50):.0f}/{percentile(single_ms, 95):.0f} ms",
            "target": f"≥ {TARGET}×", "status": verdict(ratio, TARGET)}


if __name__ == "__main__":
    main()
