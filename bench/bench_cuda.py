"""CUDA training efficiency: LoRA SFT tokens/s, peak memory and MFU through ``train_sft``.

Runs only where CUDA is present; elsewhere it writes ``bench/results/cuda.json`` with status
"skipped: no CUDA" and exits 0.

Models are random-initialised (no download): the SmolLM2-135M architecture (the bundled model's
config) and a 1B-class Llama architecture (Llama-3.2-1B shape: hidden 2048, 16 layers, 32 heads,
8 KV heads, MLP 8192, vocab 128,256, tied embeddings). bf16 weights, SDPA attention, TRL's bf16
autocast (what ``train_sft`` picks on CUDA). Each configuration trains with and without packing
(``train_sft`` has no packing option, so for the packed runs the benchmark swaps in an
``SFTConfig`` with ``packing=True``, TRL's BFD packing with padding-free batches).

Throughput is measured in steady state: a callback records the time and TRL's non-pad token count
after every optimiser step, and tokens/s is taken over the steps after the first ``--warmup``.
MFU = tokens/s × FLOPs/token ÷ peak, with FLOPs/token = 4N for LoRA (forward 2N + backward for
activations 2N; no weight gradients for frozen weights) and 6N for full fine-tuning, N = the
model's parameters (tied embeddings counted once: the LM head matmul is real compute; attention
score FLOPs are not counted). Peak = the best measured dense bf16 matmul throughput (8192³) on
this GPU, so MFU is relative to what the GPU really reaches, not to its datasheet.

    python bench/bench_cuda.py [--steps 30] [--warmup 5] [--models smollm2-135m llama-1b]
    python bench/bench_cuda.py --cpu-debug   # exercise the code path on CPU with a tiny model (figures meaningless)
"""
from __future__ import annotations

import argparse
import gc
import random
import time

from common import machine_line, print_table, quiet_libraries, verdict, write_result

NAME = "cuda"
TARGET_MFU = 0.35
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
    """Variable-length records (~40-450 prompt tokens, ~15-60 answer tokens) so that packing matters."""
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


def _step_clock():
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """Time and TRL's cumulative non-pad token count after every logged step (logging_steps=1)."""

        def __init__(self):
            self.points: list[tuple[float, int, int]] = []

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.points.append((time.perf_counter(), state.global_step, int(logs["num_tokens"])))

    return StepClock()


def run_config(model_name: str, method: str, packing: bool, args, tokenizer, recs, device: str, dtype) -> dict:
    import torch
    import trl
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    from foundation.config import PromptConfig
    from tuner.training import TrainSettings, train_sft

    cfg = {"smollm2-135m": smollm_config, "llama-1b": llama_1b_config}[model_name]()
    if args.cpu_debug:
        from foundation.models import tiny_config

        cfg = tiny_config()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa").to(device)
    n_params = sum(p.numel() for p in model.parameters())
    adapter = (LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules="all-linear",
                          task_type="CAUSAL_LM") if method == "lora" else None)
    settings = TrainSettings(max_steps=args.steps, epochs=1000.0, learning_rate=1e-4, batch_size=args.batch_size,
                             max_seq_length=args.max_len, seed=0)
    original = trl.SFTConfig
    if packing:
        class PackedSFTConfig(original):
            def __init__(self, *a, **kw):
                kw["packing"] = True
                super().__init__(*a, **kw)

        trl.SFTConfig = PackedSFTConfig
    clock = _step_clock()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        result = train_sft(model, tokenizer, recs, prompt=PromptConfig(system=SYSTEM, template=TEMPLATE), settings=settings,
                           adapter=adapter, callbacks=[clock], device=device)
    finally:
        trl.SFTConfig = original
    peak_mb = torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else None
    pts = clock.points
    w = min(args.warmup, len(pts) - 2)
    (t0, s0, k0), (t1, s1, k1) = pts[w], pts[-1]
    tps = (k1 - k0) / (t1 - t0) if t1 > t0 else 0.0
    flops_per_token = (4 if method == "lora" else 6) * n_params
    out = {"model": model_name, "method": method, "packing": packing, "params": n_params,
           "trainable_params": result.trainable_params, "steps": result.steps,
           "steady_steps": s1 - s0, "steady_tokens": k1 - k0, "tokens_per_s": tps,
           "tokens_per_s_whole_run": result.tokens_per_second, "tokens_per_step": (k1 - k0) / max(1, s1 - s0),
           "flops_per_token": flops_per_token, "achieved_tflops": tps * flops_per_token / 1e12,
           "peak_memory_mb": peak_mb, "final_loss": result.final_loss}
    del model, result
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "llama-1b"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the steady-state figure")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--full-ft", action="store_true", help="also run full fine-tuning of the 135M model (6N)")
    ap.add_argument("--cpu-debug", action="store_true", help="run the code path on CPU with a tiny model")
    args = ap.parse_args(argv)
    quiet_libraries()
    import torch

    params = {k: v for k, v in vars(args).items()}
    if not torch.cuda.is_available() and not args.cpu_debug:
        write_result(NAME, figures={}, parameters=params, target={"mfu_min_1b": TARGET_MFU},
                     status="skipped: no CUDA", notes=["skipped: no CUDA"])
        print("cuda — skipped: no CUDA")
        return {"name": NAME, "headline": "skipped: no CUDA", "target": f"MFU ≥ {TARGET_MFU:.0%} (1B)",
                "status": "skipped"}
    device = "cpu" if args.cpu_debug else "cuda"
    dtype = torch.float32 if args.cpu_debug else torch.bfloat16
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    from foundation.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("default"))
    peak = measure_peak_tflops(device, dtype, n=1024 if args.cpu_debug else 8192)
    print(f"  measured dense matmul peak: {peak:.1f} TFLOP/s")
    recs = records(args.batch_size * (args.steps + 2))
    configs = [(m, "lora", p) for m in args.models for p in (False, True)]
    if args.full_ft:
        configs.append(("smollm2-135m", "full", False))
    runs = []
    for m, method, packing in configs:
        try:
            r = run_config(m, method, packing, args, tokenizer, recs, device, dtype)
            r["mfu"] = r["achieved_tflops"] / peak if peak else None
        except torch.cuda.OutOfMemoryError as e:  # type: ignore[attr-defined]
            r = {"model": m, "method": method, "packing": packing, "error": f"out of memory: {e}"}
        runs.append(r)
        print(f"  {m} {method} packing={packing}: {r.get('tokens_per_s', 0):,.0f} tok/s, "
              f"MFU {r.get('mfu') or 0:.1%}, peak {r.get('peak_memory_mb') or 0:,.0f} MB")
    one_b = [r for r in runs if r["model"] == "llama-1b" and "mfu" in r]
    best_1b = max((r["mfu"] for r in one_b), default=None)
    figures = {"peak_tflops_measured": peak, "runs": runs, "best_mfu_1b": best_1b}
    write_result(NAME, figures=figures, parameters=params, target={"mfu_min_1b": TARGET_MFU},
                 status="ok" if not args.cpu_debug else "debug: cpu",
                 notes=["MFU = tokens/s × (4N LoRA | 6N full) / measured bf16 matmul peak; attention FLOPs not "
                        "counted", "packing forced by swapping trl.SFTConfig: train_sft has no packing option"])
    print(f"\ncuda — {machine_line()}")
    print_table([(f"{r['model']} {r['method']}{' packed' if r['packing'] else ''}",
                  f"{r.get('tokens_per_s', 0):,.0f}", f"{(r.get('mfu') or 0):.1%}",
                  f"{(r.get('peak_memory_mb') or 0):,.0f}") for r in runs],
                header=("config", "tokens/s", "MFU", "peak MB"))
    return {"name": NAME, "headline": f"1B best MFU {best_1b:.1%}" if best_1b is not None else "no 1B result",
            "target": f"MFU ≥ {TARGET_MFU:.0%} (1B)", "status": verdict(best_1b, TARGET_MFU)}


if __name__ == "__main__":
    main()
