"""Training throughput: pilot SFT through ``training.training.train_sft`` vs a plain PyTorch loop.

Both sides train the same model (bundled SmolLM2-135M-Instruct, fp32 on CPU) with the same LoRA
adapter (r=8, alpha=16, all linear layers, no dropout), on the *same batches*: a first, untimed
run of ``train_sft`` records every batch the TRL collator hands to the model (input ids,
attention mask, completion-only labels, same padding), and the reference replays exactly those
tensors through ``model(**batch) -> loss.backward() -> AdamW.step()``. The runs are interleaved
(ours, reference, ours, reference, ...) and each side's tokens/s is the median over repetitions.
Only non-pad tokens (attention mask) count, on both sides.

Our time is ``TrainResult.train_seconds`` (``trainer.train()``: dataloader, optimiser, the loop,
logging, callbacks); the reference's time is optimiser creation plus its loop.

    python bench/bench_training.py [--steps 20] [--reps 2] [--batch-size 8] [--profile]
"""
from __future__ import annotations

import argparse
import gc
import time

from common import (machine_line, median, print_table, quiet_libraries, synthetic_tickets, verdict,
                    write_result)

NAME = "training"
TARGET = 0.9
SYSTEM = "You route customer support tickets. Answer with one queue name: account, billing, shipping or technical."
TEMPLATE = "Ticket: {input}\nQueue:"


def lora():
    from peft import LoraConfig

    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def fresh_model():
    from foundation.models import load_model, resolve_model

    return load_model(resolve_model("default"), device="cpu")


def settings_for(steps: int, batch_size: int, max_len: int):
    from training.training import TrainSettings

    return TrainSettings(max_steps=steps, epochs=1000.0, learning_rate=1e-3, batch_size=batch_size,
                         max_seq_length=max_len, seed=0)


def run_ours(tokenizer, records, settings, capture: list | None = None):
    """One ``train_sft`` run; with ``capture`` given, record every batch the trainer computes a loss on."""
    from foundation.config import PromptConfig
    from training.training import _plain_loss_trainer, train_sft

    trainer_cls = _plain_loss_trainer()  # what train_sft uses off CUDA
    original = trainer_cls.compute_loss
    if capture is not None:
        def recording(self, model, inputs, *a, **kw):
            capture.append({k: v.detach().clone() for k, v in inputs.items() if hasattr(v, "detach")})
            return original(self, model, inputs, *a, **kw)

        trainer_cls.compute_loss = recording
    try:
        model = fresh_model()
        t0 = time.perf_counter()
        result = train_sft(model, tokenizer, records, prompt=PromptConfig(system=SYSTEM, template=TEMPLATE), settings=settings,
                           adapter=lora(), device="cpu")
        call_seconds = time.perf_counter() - t0
    finally:
        trainer_cls.compute_loss = original
    out = {"train_seconds": result.train_seconds, "call_seconds": call_seconds, "tokens_seen": result.tokens_seen,
           "steps": result.steps, "final_loss": result.final_loss, "trainable_params": result.trainable_params}
    del result, model
    gc.collect()
    return out


def run_reference(batches, lr: float = 1e-3, seed: int = 0):
    """Plain PyTorch: same model, same LoRA, same batches, AdamW, no Trainer."""
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(fresh_model(), lora())
    model.train()
    t0 = time.perf_counter()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    loss = None
    for batch in batches:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                    use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = out.loss.item()
    seconds = time.perf_counter() - t0
    del model, opt
    gc.collect()
    return {"seconds": seconds, "final_loss": loss}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=2, help="timed repetitions per side (interleaved)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--profile", action="store_true", help="also cProfile one run of ours and print the top entries")
    args = ap.parse_args(argv)
    quiet_libraries()
    import torch

    from foundation.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("default"))
    records = synthetic_tickets(args.records)
    settings = settings_for(args.steps, args.batch_size, args.max_len)

    # Untimed warm-up of ours that also records the exact batches the trainer feeds the model.
    batches: list[dict] = []
    warm = run_ours(tokenizer, records, settings, capture=batches)
    tokenizer.padding_side = "left"
    keys = sorted(batches[0])
    nonpad = int(sum(int(b["attention_mask"].sum()) for b in batches))
    padded = int(sum(b["input_ids"].numel() for b in batches))
    label_tokens = int(sum(int((b["labels"] != -100).sum()) for b in batches))
    print(f"captured {len(batches)} batches, keys {keys}, {nonpad} non-pad tokens ({padded} with padding), "
          f"{label_tokens} loss tokens; TRL counted {warm['tokens_seen']}")

    ours, ref = [], []
    for _ in range(args.reps):
        ours.append(run_ours(tokenizer, records, settings))
        tokenizer.padding_side = "left"
        ref.append(run_reference(batches))
        line = (f"  ours {ours[-1]['train_seconds']:.1f} s (call {ours[-1]['call_seconds']:.1f} s)   "
                f"reference {ref[-1]['seconds']:.1f} s")
        print(line)

    ours_s = median([o["train_seconds"] for o in ours])
    call_s = median([o["call_seconds"] for o in ours])
    ref_s = median([r["seconds"] for r in ref])
    ours_tps, ref_tps = nonpad / ours_s, nonpad / ref_s
    ratio = ours_tps / ref_tps
    figures = {
        "ratio": ratio,
        "ours_tokens_per_s": ours_tps,
        "reference_tokens_per_s": ref_tps,
        "ours_train_seconds_median": ours_s,
        "ours_call_seconds_median": call_s,
        "ours_tokens_per_s_incl_setup": nonpad / call_s,
        "reference_seconds_median": ref_s,
        "ours_seconds_per_step": ours_s / args.steps,
        "reference_seconds_per_step": ref_s / args.steps,
        "nonpad_tokens": nonpad,
        "padded_tokens": padded,
        "loss_tokens": label_tokens,
        "trl_tokens_seen": warm["tokens_seen"],
        "ours_final_loss": median([o["final_loss"] for o in ours]),
        "reference_final_loss": median([r["final_loss"] for r in ref]),
        "trainable_params": warm["trainable_params"],
    }
    if args.profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        run_ours(tokenizer, records, settings)
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(40)
        print(s.getvalue())
    params = {"model": "bundled SmolLM2-135M-Instruct", "dtype": "float32", "device": "cpu",
              "adapter": "LoRA r=8 alpha=16 all-linear dropout=0", "steps": args.steps, "reps": args.reps,
              "batch_size": args.batch_size, "max_seq_length": args.max_len, "records": args.records,
              "batch_keys": keys, "torch_threads": torch.get_num_threads(),
              "timing": "ours = TrainResult.train_seconds (trainer.train()); reference = AdamW creation + loop; "
                        "medians over interleaved repetitions; tokens = non-pad tokens of the recorded batches"}
    write_result(NAME, figures=figures, parameters=params, target={"ratio_min": TARGET},
                 raw={"ours": ours, "reference": ref, "warmup": warm})
    print(f"\ntraining — {machine_line()}")
    print_table([
        ("ours tokens/s (train_sft)", ours_tps),
        ("reference tokens/s (plain loop)", ref_tps),
        ("ours s/step", ours_s / args.steps),
        ("reference s/step", ref_s / args.steps),
        ("ours tokens/s incl. setup", nonpad / call_s),
        ("ratio ours/reference", ratio),
        (f"target ≥ {TARGET}×", verdict(ratio, TARGET)),
    ])
    return {"name": NAME, "headline": f"{ratio:.2f}× of plain loop ({ours_tps:.0f} vs {ref_tps:.0f} tok/s)",
            "target": f"≥ {TARGET}×", "status": verdict(ratio, TARGET)}


if __name__ == "__main__":
    main()
