"""GRPO throughput on CPU: rollouts (generation) and the policy update, next to SFT on the same prompts.

Both sides train the bundled SmolLM2-135M-Instruct (fp32, CPU) with the same LoRA adapter (r=8,
alpha=16, all linear layers) on the same ticket-routing prompts, through the objectives' own code:
``training.rl.train_grpo`` (metric ``accuracy`` over the four queues as grader, plus the format
reward) and ``training.training.train_sft``. In GRPO the trainer's generation call is timed and its
completion tokens counted; the policy update is the rest of the step (log-probabilities, loss,
backward, optimiser), over the prompt + completion tokens TRL counts. SFT's tokens/s is its own
``TrainResult`` (non-pad prompt + answer tokens). Runs are interleaved (GRPO, SFT, GRPO, ...).

    python bench/bench_grpo.py [--steps 6] [--reps 1] [--batch-size 8] [--generations 4] [--max-new-tokens 8]
"""
from __future__ import annotations

import argparse
import gc
import time

from common import (machine_line, median, print_table, quiet_libraries, synthetic_tickets, write_result)

NAME = "grpo"
SYSTEM = "You route customer support tickets. Answer with one queue name: account, billing, shipping or technical."
TEMPLATE = "Ticket: {input}\nQueue:"
LABELS = ["account", "billing", "shipping", "technical"]


def lora():
    from peft import LoraConfig

    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def fresh_model():
    from foundation.models import load_model, resolve_model

    return load_model(resolve_model("default"), device="cpu")


def make_task(max_new_tokens: int):
    from foundation.config import TaskConfig

    return TaskConfig(name="bench-grpo", model="default", data={"train": "a.jsonl", "eval": "b.jsonl"},
                      prompt={"system": SYSTEM, "template": TEMPLATE}, metric={"name": "accuracy", "labels": LABELS},
                      generation={"max_new_tokens": max_new_tokens})


def settings_for(steps: int, batch_size: int):
    from training.training import TrainSettings

    return TrainSettings(max_steps=steps, epochs=1000.0, learning_rate=5e-4, batch_size=batch_size,
                         max_seq_length=256, seed=0)


def timed_generation():
    """Wrap GRPOTrainer's generation call: seconds spent and completion tokens produced."""
    from trl import GRPOTrainer

    original = GRPOTrainer._generate_single_turn
    clock = {"seconds": 0.0, "tokens": 0, "calls": 0}

    def timed(self, *args, **kwargs):
        t0 = time.perf_counter()
        completion_ids, logprobs = original(self, *args, **kwargs)
        clock["seconds"] += time.perf_counter() - t0
        clock["tokens"] += sum(len(c) for c in completion_ids)
        clock["calls"] += 1
        return completion_ids, logprobs

    GRPOTrainer._generate_single_turn = timed
    return clock, lambda: setattr(GRPOTrainer, "_generate_single_turn", original)


def run_grpo(tokenizer, records, task, settings, generations: int) -> dict:
    from training.objectives import TrainingJob
    from training.rl import train_grpo

    clock, restore = timed_generation()
    try:
        job = TrainingJob(model=fresh_model(), tokenizer=tokenizer, records=records, prompt=task.prompt,
                          settings=settings, adapter=lora(), task=task,
                          params={"num_generations": generations, "beta": 0.0, "format_weight": 0.2})
        result = train_grpo(job)
    finally:
        restore()
    update_s = result.train_seconds - clock["seconds"]
    out = {"train_seconds": result.train_seconds, "steps": result.steps, "generation_seconds": clock["seconds"],
           "completion_tokens": clock["tokens"], "tokens_seen": result.tokens_seen, "update_seconds": update_s,
           "generation_tokens_per_s": clock["tokens"] / clock["seconds"],
           "update_tokens_per_s": result.tokens_seen / update_s, "reward_first": result.details.get("reward_first"),
           "reward_last": result.details.get("reward_last"), "prompts_per_step": result.details["prompts_per_step"]}
    del result, job
    gc.collect()
    return out


def run_sft(tokenizer, records, task, settings) -> dict:
    from training.training import train_sft

    result = train_sft(fresh_model(), tokenizer, records, prompt=task.prompt, settings=settings, adapter=lora())
    out = {"train_seconds": result.train_seconds, "steps": result.steps, "tokens_seen": result.tokens_seen,
           "tokens_per_s": result.tokens_per_second, "final_loss": result.final_loss}
    del result
    gc.collect()
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions per side (interleaved)")
    ap.add_argument("--batch-size", type=int, default=8, help="completions per GRPO step; records per SFT step")
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--records", type=int, default=64)
    args = ap.parse_args(argv)
    quiet_libraries()
    import torch

    from foundation.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("default"))
    records = synthetic_tickets(args.records)
    task = make_task(args.max_new_tokens)
    settings = settings_for(args.steps, args.batch_size)
    run_sft(tokenizer, records, task, settings_for(1, args.batch_size))  # untimed warm-up
    grpo, sft = [], []
    for _ in range(args.reps):
        grpo.append(run_grpo(tokenizer, records, task, settings_for(args.steps, args.batch_size), args.generations))
        sft.append(run_sft(tokenizer, records, task, settings))
        print(f"  grpo {grpo[-1]['train_seconds']:.1f} s (generation {grpo[-1]['generation_seconds']:.1f} s)   "
              f"sft {sft[-1]['train_seconds']:.1f} s", flush=True)
    figures = summarise(grpo, sft)
    params = {"model": "bundled SmolLM2-135M-Instruct", "dtype": "float32", "device": "cpu",
              "adapter": "LoRA r=8 alpha=16 all-linear dropout=0", "steps": args.steps, "reps": args.reps,
              "batch_size": args.batch_size, "num_generations": args.generations,
              "max_new_tokens": args.max_new_tokens, "records": args.records, "torch_threads": torch.get_num_threads(),
              "reward": "accuracy over 4 queue labels + 0.2 × format", "sampling": "temperature 1.0",
              "timing": "generation = GRPOTrainer._generate_single_turn; update = train_seconds − generation; "
                        "medians over interleaved repetitions"}
    write_result(NAME, figures=figures, parameters=params, raw={"grpo": grpo, "sft": sft})
    print(f"\ngrpo — {machine_line()}")
    print_table([
        ("GRPO generation tokens/s (completions)", figures["grpo_generation_tokens_per_s"]),
        ("GRPO update tokens/s (prompt + completion)", figures["grpo_update_tokens_per_s"]),
        ("GRPO s/step", figures["grpo_seconds_per_step"]),
        ("GRPO share of a step in generation", figures["grpo_generation_share"]),
        ("SFT tokens/s", figures["sft_tokens_per_s"]),
        ("SFT s/step", figures["sft_seconds_per_step"]),
        ("GRPO step / SFT step", figures["step_time_ratio"]),
    ])
    return {"name": NAME, "headline": (f"GRPO {figures['grpo_seconds_per_step']:.1f} s/step "
                                       f"({figures['grpo_generation_share']:.0%} generating) vs SFT "
                                       f"{figures['sft_seconds_per_step']:.1f} s/step"),
            "target": "—", "status": "ok"}


def summarise(grpo: list[dict], sft: list[dict]) -> dict:
    g_steps, s_steps = grpo[0]["steps"], sft[0]["steps"]
    g_step = median([g["train_seconds"] for g in grpo]) / g_steps
    s_step = median([s["train_seconds"] for s in sft]) / s_steps
    return {
        "grpo_generation_tokens_per_s": median([g["generation_tokens_per_s"] for g in grpo]),
        "grpo_update_tokens_per_s": median([g["update_tokens_per_s"] for g in grpo]),
        "grpo_tokens_per_s_overall": median([g["tokens_seen"] / g["train_seconds"] for g in grpo]),
        "grpo_seconds_per_step": g_step,
        "grpo_generation_share": median([g["generation_seconds"] / g["train_seconds"] for g in grpo]),
        "grpo_completion_tokens_per_step": grpo[0]["completion_tokens"] / g_steps,
        "grpo_tokens_per_step": grpo[0]["tokens_seen"] / g_steps,
        "grpo_prompts_per_step": grpo[0]["prompts_per_step"],
        "sft_tokens_per_s": median([s["tokens_per_s"] for s in sft]),
        "sft_seconds_per_step": s_step,
        "sft_tokens_per_step": sft[0]["tokens_seen"] / s_steps,
        "step_time_ratio": g_step / s_step,
        "update_vs_sft_tokens_per_s": median([g["update_tokens_per_s"] for g in grpo]) / median(
            [s["tokens_per_s"] for s in sft]),
    }


if __name__ == "__main__":
    main()
