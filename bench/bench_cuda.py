"""CUDA training efficiency: LoRA SFT tokens/s, peak memory and MFU through ``train_sft``, before
and after the CUDA path of ``training/cuda.py``, with the loss curves side by side.

Runs only where CUDA is present; elsewhere it writes ``bench/results/cuda.json`` with status
"skipped: no CUDA" and exits 0.

Models are random-initialised (no download): the SmolLM2-135M architecture (the bundled model's
config) and a 1B-class Llama (Llama-3.2-1B shape: hidden 2048, 16 layers, 32 heads, 8 KV heads,
MLP 8192, vocab 128,256, tied embeddings), bf16 weights, SDPA attention. The records vary in
length (~40-450 prompt tokens, ~15-60 answer tokens). Three runs per model:

- ``before``: the product's previous CUDA path, kept here as the reference: TRL's SFTTrainer and
  loss, PEFT's fp32 adapter weights, padded batches in random order, a log (host sync) every step;
- ``after, batch 16``: ``train_sft`` today at the same 16 records a step (same loss curve expected);
- ``after, token budget``: ``train_sft`` today at ``--big-batch`` records a step, the micro-batch
  chosen from memory by ``training.cuda`` (what a user with a large train set gets).

Throughput is measured in steady state, between the first and last logged step (logs every 10
steps on the new path). MFU = tokens/s × FLOPs/token ÷ peak, FLOPs/token = 4N for LoRA (forward 2N
+ backward through activations 2N; frozen weights get no gradient), N = the model's parameters
(tied embeddings once; attention score FLOPs not counted); tokens are non-pad tokens. Peak = the
best measured dense bf16 matmul (8192³) on this GPU, not the datasheet.

    python bench/bench_cuda.py [--steps 30] [--models smollm2-135m llama-1b] [--big-batch 128]
    python bench/bench_cuda.py --cpu-debug   # the code path on CPU with a tiny model (figures meaningless)
"""
from __future__ import annotations

import argparse
import gc
import random
import time

from common import machine_line, print_table, quiet_libraries, verdict, write_result

NAME = "cuda"
TARGET_MFU = 0.45
SYSTEM = "You are a helpful assistant. Summarise the report in two sentences."
TEMPLATE = "Report:\n{input}\nSummary:"
WORDS = ("system latency cluster region outage customer invoice pipeline deploy rollback metric alert "
         "queue worker shard replica backup restore index cache memory budget forecast quarter revenue "
         "contract supplier warehouse parcel courier schedule meeting decision owner risk mitigation").split()


def llama_1b_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                       num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=8192,
                       rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=500000.0, bos_token_id=1,
                       eos_token_id=2, pad_token_id=2)


def smollm_config():
    from transformers import AutoConfig

    from foundation.models import bundled_model_dir

    return AutoConfig.from_pretrained(bundled_model_dir())


def records(n: int, seed: int = 0):
    """Variable-length records (~40-450 prompt tokens, ~15-60 answer tokens)."""
    from foundation.records import Record

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 380)))
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 50)))
        out.append(Record(input=text, output=answer))
    return out


def measure_peak_tflops(device: str, dtype, n: int = 8192, iters: int = 20) -> float:
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(3):
        for _ in range(3):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * iters / (time.perf_counter() - t0) / 1e12)
    del a, b
    return best


def _clock():
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """Time, step, tokens and loss at every log."""

        def __init__(self):
            self.points: list[tuple[float, int, int]] = []
            self.losses: list[tuple[int, float]] = []

        def on_log(self, args, state, control, logs=None, **kw):
            import torch

            if logs and "num_tokens" in logs:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.points.append((time.perf_counter(), state.global_step, int(logs["num_tokens"])))
            if logs and "loss" in logs:
                self.losses.append((state.global_step, float(logs["loss"])))

    return StepClock()


def _legacy_train(model, tokenizer, recs, settings, adapter, clock, device):
    """The previous CUDA path of train_sft, as the reference (TRL's loss, fp32 adapters, padded
    batches in random order, a log every step)."""
    from peft import get_peft_model
    from trl import SFTConfig, SFTTrainer

    from foundation.config import PromptConfig
    from training.training import sft_dataset

    model = get_peft_model(model, adapter)
    args = SFTConfig(output_dir="/tmp/advise-bench-legacy", max_steps=settings.max_steps,
                     per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                     max_length=settings.max_seq_length, completion_only_loss=True, packing=False,
                     bf16=device == "cuda", gradient_checkpointing=False, logging_steps=1, save_strategy="no",
                     report_to="none", seed=0, data_seed=0, dataloader_num_workers=0, disable_tqdm=True,
                     use_cpu=device != "cuda")
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(recs, PromptConfig(
        system=SYSTEM, template=TEMPLATE)), processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_config(model_name: str, mode: str, args, tokenizer, recs, device: str, dtype) -> dict:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    from foundation.config import PromptConfig
    from training.training import TrainSettings, train_sft

    cfg = {"smollm2-135m": smollm_config, "llama-1b": llama_1b_config}[model_name]()
    if args.cpu_debug:
        from foundation.models import tiny_config

        cfg = tiny_config()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    n_params = sum(p.numel() for p in model.parameters())
    adapter = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules="all-linear",
                         task_type="CAUSAL_LM")
    batch = args.big_batch if mode == "budget" else args.batch_size
    settings = TrainSettings(max_steps=args.steps, epochs=1000.0, learning_rate=1e-4, batch_size=batch,
                             max_seq_length=args.max_len, seed=0, micro_batch_from_memory=True)
    clock = _clock()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if mode == "before":
        trainable = _legacy_train(model, tokenizer, recs, settings, adapter, clock, device)
    else:
        trainable = train_sft(model, tokenizer, recs, prompt=PromptConfig(system=SYSTEM, template=TEMPLATE),
                              settings=settings, adapter=adapter, callbacks=[clock], device=device).trainable_params
    peak_mb = torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else None
    first = next(i for i, p in enumerate(clock.points) if p[1] >= min(args.warmup, clock.points[-1][1] - 1))
    (t0, s0, k0), (t1, s1, k1) = clock.points[first], clock.points[-1]
    tps = (k1 - k0) / (t1 - t0) if t1 > t0 else 0.0
    out = {"model": model_name, "mode": mode, "records_per_step": batch, "params": n_params,
           "trainable_params": trainable, "micro_batch": settings.batch_size, "grad_accum": settings.grad_accum,
           "steady_steps": s1 - s0, "steady_tokens": k1 - k0, "tokens_per_s": tps,
           "tokens_per_step": (k1 - k0) / max(1, s1 - s0), "flops_per_token": 4 * n_params,
           "achieved_tflops": tps * 4 * n_params / 1e12, "peak_memory_mb": peak_mb, "losses": clock.losses}
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def loss_agreement(before: dict, after: dict) -> dict:
    """Mean loss over each block of 10 steps, before vs after (the new path logs every 10 steps)."""
    blocks = {}
    for step, loss in after["losses"]:
        window = [v for s, v in before["losses"] if step - 10 < s <= step]
        if window:
            blocks[step] = {"before": sum(window) / len(window), "after": loss}
    worst = max((abs(b["after"] - b["before"]) / abs(b["before"]) for b in blocks.values()), default=None)
    return {"blocks": blocks, "max_relative_difference": worst}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "llama-1b"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10, help="steps left out of the steady-state figure")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--big-batch", type=int, default=128, help="records a step for the token-budget run")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--cpu-debug", action="store_true", help="run the code path on CPU with a tiny model")
    args = ap.parse_args(argv)
    quiet_libraries()
    import torch

    params = dict(vars(args))
    if not torch.cuda.is_available() and not args.cpu_debug:
        write_result(NAME, figures={}, parameters=params, target={"mfu_min_1b": TARGET_MFU},
                     status="skipped: no CUDA", notes=["skipped: no CUDA"])
        print("cuda — skipped: no CUDA")
        return {"name": NAME, "headline": "skipped: no CUDA", "target": f"MFU ≥ {TARGET_MFU:.0%} (1B)",
                "status": "skipped"}
    device = "cpu" if args.cpu_debug else "cuda"
    dtype = torch.float32 if args.cpu_debug else torch.bfloat16
    from foundation.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("default"))
    peak = measure_peak_tflops(device, dtype, n=1024 if args.cpu_debug else 8192)
    print(f"  measured dense matmul peak: {peak:.1f} TFLOP/s")
    recs = records(max(args.batch_size, args.big_batch) * (args.steps + 2))
    runs, agreement = [], {}
    for m in args.models:
        by_mode = {}
        for mode in ("before", "after", "budget"):
            try:
                r = run_config(m, mode, args, tokenizer, recs, device, dtype)
                r["mfu"] = r["achieved_tflops"] / peak if peak else None
            except torch.cuda.OutOfMemoryError as e:  # type: ignore[attr-defined]
                r = {"model": m, "mode": mode, "error": f"out of memory: {str(e)[:200]}"}
            runs.append(r)
            by_mode[mode] = r
            print(f"  {m} {mode}: {r.get('tokens_per_s', 0):,.0f} tok/s, MFU {r.get('mfu') or 0:.1%}, "
                  f"micro {r.get('micro_batch')}×{r.get('grad_accum')}, peak {r.get('peak_memory_mb') or 0:,.0f} MB")
        if "losses" in by_mode["before"] and "losses" in by_mode["after"]:
            agreement[m] = loss_agreement(by_mode["before"], by_mode["after"])
    one_b = [r for r in runs if r["model"] == "llama-1b" and "mfu" in r and r["mode"] != "before"]
    best_1b = max((r["mfu"] for r in one_b), default=None)
    speedup = {m: {r["mode"]: r["tokens_per_s"] / next(b["tokens_per_s"] for b in runs if b["model"] == m
                                                         and b["mode"] == "before")
                   for r in runs if r["model"] == m and "tokens_per_s" in r}
               for m in args.models if any(b["model"] == m and b["mode"] == "before" and "tokens_per_s" in b
                                           for b in runs)}
    figures = {"peak_tflops_measured": peak, "best_mfu_1b": best_1b, "speedup_vs_before": speedup,
               "loss_agreement": agreement, "runs": runs}
    write_result(NAME, figures=figures, parameters=params, target={"mfu_min_1b": TARGET_MFU},
                 status="ok" if not args.cpu_debug else "debug: cpu",
                 notes=["MFU = tokens/s × 4N (LoRA) / measured bf16 matmul peak; attention FLOPs not counted",
                        "before = the previous CUDA path, rebuilt in this file as the reference"])
    print(f"\ncuda — {machine_line()}")
    print_table([(f"{r['model']} {r['mode']}", f"{r.get('tokens_per_s', 0):,.0f}", f"{(r.get('mfu') or 0):.1%}",
                  f"{(r.get('peak_memory_mb') or 0):,.0f}") for r in runs],
                header=("config", "tokens/s", "MFU", "peak MB"))
    return {"name": NAME, "headline": f"1B best MFU {best_1b:.1%}" if best_1b is not None else "no 1B result",
            "target": f"MFU ≥ {TARGET_MFU:.0%} (1B)", "status": verdict(best_1b, TARGET_MFU)}


if __name__ == "__main__":
    main()
