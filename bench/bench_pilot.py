"""The demo's pilots, today's training path against the one before, side by side in one run.

On ``examples/manual-qa`` (bundled SmolLM2-135M-Instruct, fp32 on CPU, the pilot's own LoRA and
settings from the task: batch 8, its derived sequence length) this trains the plain pilot (the
task's prompts) and the FT + RAG pilot (RAFT-style prompts with retrieved manual pages, ~400
tokens a record) a few steps each, on two paths:

- ``before``: full-vocabulary fp32 logits at every position and the model's own loss, the
  attention mask kept on CPU, micro-batches of up to ``CPU_MICRO_TOKENS`` tokens
  (``TrainSettings.answer_logits=False``);
- ``now``: logits at the answer positions only, no attention mask (right padding), micro-batches
  of up to ``CPU_SFT_MICRO_TOKENS`` (gradient accumulation keeps the batch of 8).

Each (pilot, path) run is its own process, so its peak resident memory is its own: sampled during
``train_sft`` with ``foundation.resources.PeakMemory``, as the pilot reports it. The paths
alternate (before, now, before, now); figures are medians over ``--reps``. Tokens are non-pad
tokens. The loss per record is compared in one more process per pilot: ``--records`` records
alone and one batch of 8 through the trainer's ``compute_loss`` on both paths (fresh adapter),
and the logged loss of every step of the two training runs.

    BENCH_THREADS=1 python bench/bench_pilot.py [--steps 3] [--rag-steps 2] [--reps 1] [--records 16]

``--busy`` measures what a shared machine sees (``bench/results/pilot-busy.json``): another process
spins on one core for the whole run, ``before`` keeps torch's own thread count (as ``advise run``
did before ``foundation.threads``) and ``now`` takes the threads ``advise run`` takes now.

On a shared machine run it with ``BENCH_THREADS=1`` (``bench/common.py``): with 2 threads under
load a step waits at OpenMP barriers and wall times swing several-fold.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, core_taken, machine_line, median, print_table, verdict, write_result

NAME = "pilot"
TARGETS = {"speedup_min": 1.6, "rag_peak_memory_gb_max": 4.0, "loss_rel_diff_max": 1e-4}
TASK = ROOT / "examples" / "manual-qa" / "task.yaml"
FIT_THREADS = "BENCH_PILOT_FIT_THREADS"  # set: the 'now' path takes the threads advise run takes (fit_threads)


def pilot_setup(pilot: str, run_dir: Path):
    """The task, tokenizer, train records, prompt messages and the pilot's TrialConfig, as the demo's run builds them."""
    from advisor.tasks import load_task
    from baselines.base import RunContext
    from baselines.finetune import pilot_config
    from foundation.corpus import load_corpus
    from foundation.data import load_splits
    from foundation.models import load_tokenizer, resolve_model
    from training.lengths import record_token_lengths, training_length

    task = load_task(TASK)
    splits = load_splits(task)
    tokenizer = load_tokenizer(resolve_model(task.model, task.base_dir))
    messages_for = None
    if pilot == "finetune+rag":
        from baselines.finetune_rag import _prompts
        from baselines.rag import build_retrieval

        ctx = RunContext(task=task, splits=splits, corpus=load_corpus(task), model=None, tokenizer=tokenizer,
                         device="cpu", run_dir=run_dir)
        messages_for = _prompts(ctx, build_retrieval(ctx)[0])[0].train
    fit = training_length(record_token_lengths(tokenizer, task.prompt, splits.train, messages_for),
                          None if messages_for else task.baselines.finetune.max_seq_length, None,
                          "baselines.finetune.max_seq_length")
    return task, tokenizer, splits.train, messages_for, pilot_config(task, fit.max_seq_length)


def model_and_adapter(task, config):
    """The base model and the pilot's LoRA config, as ``training.trial.train_config`` prepares them."""
    from foundation.models import load_model, resolve_model
    from training.artifacts import prepare_adapter
    from training.methods import METHODS
    from training.modelfacts import model_facts

    model = load_model(resolve_model(task.model, task.base_dir), device="cpu", seed=task.seed)
    return model, prepare_adapter(METHODS["lora"], config.params, model_facts(model, "cpu"))[0]


def child_train(pilot: str, path: str, steps: int, run_dir: Path) -> dict:
    from foundation.resources import PeakMemory
    from training import training
    from training.trial import train_settings

    task, tokenizer, records, messages_for, config = pilot_setup(pilot, run_dir)
    settings = train_settings(config, micro_batch_size=int(config.params["batch_size"]), seed=task.seed)
    settings.max_steps, settings.time_budget_s = steps, None
    settings.answer_logits = path == "now"
    model, adapter = model_and_adapter(task, config)
    if path == "now" and os.environ.get(FIT_THREADS):  # --busy, bench_threads: as advise run does now
        from foundation.threads import fit_threads

        fit_threads()
    import torch

    threads = torch.get_num_threads()
    with PeakMemory("cpu") as mem:
        rss_before, cpu_start = mem.peak_mb, time.process_time()
        result = training.train_sft(model, tokenizer, records, prompt=task.prompt, settings=settings,
                                    adapter=adapter, messages_for=messages_for)
    return {"steps": result.steps, "train_seconds": result.train_seconds, "tokens_seen": result.tokens_seen,
            "seconds_per_step": result.train_seconds / result.steps, "tokens_per_second": result.tokens_per_second,
            "cpu_seconds_per_step": (time.process_time() - cpu_start) / result.steps,
            "peak_memory_mb": mem.peak_mb, "memory_before_training_mb": rss_before,
            "micro_batch": settings.batch_size, "grad_accum": settings.grad_accum,
            "max_seq_length": settings.max_seq_length, "threads": threads,
            "step_losses": [h["loss"] for h in result.log_history if "loss" in h]}


def child_losses(pilot: str, n: int, run_dir: Path) -> dict:
    """Each of the first ``n`` records alone, and one batch of 8, through compute_loss on both paths."""
    import torch

    from training import training

    task, tokenizer, records, messages_for, config = pilot_setup(pilot, run_dir)
    model, adapter = model_and_adapter(task, config)
    model = training.apply_adapter(model, adapter)
    settings = training.TrainSettings(max_steps=1, batch_size=8, max_seq_length=config.max_seq_length)
    trainer = training._plain_loss_trainer()(
        model=model, args=training.sft_args(settings, 1, "cpu"), processing_class=tokenizer,
        train_dataset=training.sft_dataset(records[:max(n, 8)], task.prompt, messages_for))
    data, collate = trainer.train_dataset, trainer.data_collator
    batches = [collate([data[i]]) for i in range(min(n, len(data)))] + [collate([data[i] for i in range(8)])]
    out = {"before": [], "now": []}
    with torch.no_grad():
        for batch in batches:
            for path, flag in (("before", False), ("now", True)):
                trainer.answer_logits = flag
                out[path].append(float(trainer.compute_loss(trainer.model, dict(batch))))
    return {**out, "records": len(batches) - 1, "batched": "the last entry is one batch of 8 records"}


def run_child(*args: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--_child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rel_diff(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)), default=float("nan"))


def measure(pilot: str, steps: int, reps: int, n_records: int, run_dir: Path) -> dict:
    runs = {"before": [], "now": []}
    for _ in range(reps):
        for path in ("before", "now"):
            runs[path].append(run_child("train", pilot, path, str(steps), str(run_dir)))
            r = runs[path][-1]
            print(f"  {pilot} {path}: {r['seconds_per_step']:.1f} s/step, {r['tokens_per_second']:.0f} tok/s, "
                  f"peak {r['peak_memory_mb'] / 1024:.2f} GB (micro-batch {r['micro_batch']}×{r['grad_accum']})",
                  flush=True)
    losses = run_child("losses", pilot, str(n_records), str(run_dir))
    fig = {}
    for path in ("before", "now"):
        for key in ("seconds_per_step", "cpu_seconds_per_step", "tokens_per_second", "peak_memory_mb", "threads"):
            fig[f"{path}_{key}"] = median([r[key] for r in runs[path]])
    fig["speedup_seconds_per_step"] = fig["before_seconds_per_step"] / fig["now_seconds_per_step"]
    fig["speedup_tokens_per_second"] = fig["now_tokens_per_second"] / fig["before_tokens_per_second"]
    fig["speedup_cpu_seconds_per_step"] = fig["before_cpu_seconds_per_step"] / fig["now_cpu_seconds_per_step"]
    fig["peak_memory_ratio"] = fig["now_peak_memory_mb"] / fig["before_peak_memory_mb"]
    fig["loss_per_record_max_rel_diff"] = rel_diff(losses["before"], losses["now"])
    fig["step_loss_max_rel_diff"] = max(rel_diff(b["step_losses"], n["step_losses"])
                                        for b, n in zip(runs["before"], runs["now"]))
    fig["max_seq_length"] = runs["now"][0]["max_seq_length"]
    return {"figures": fig, "raw": {"runs": runs, "losses": losses}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="training steps of each plain-pilot run")
    ap.add_argument("--rag-steps", type=int, default=2, help="training steps of each FT + RAG run")
    ap.add_argument("--reps", type=int, default=1, help="runs per path and pilot (interleaved)")
    ap.add_argument("--records", type=int, default=16, help="records whose loss is compared alone")
    ap.add_argument("--busy", action="store_true", help="another process spins on one core throughout; "
                    "'now' fits its threads as advise run does (results: pilot-busy.json)")
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        from common import quiet_libraries

        quiet_libraries()
        kind, pilot, *rest = args._child
        out = (child_train(pilot, rest[0], int(rest[1]), Path(rest[2])) if kind == "train"
               else child_losses(pilot, int(rest[0]), Path(rest[1])))
        print(json.dumps(out))
        return out
    run_dir = Path(tempfile.mkdtemp(prefix="bench-pilot-"))  # the retrieval index, built once, shared
    if args.busy:
        os.environ[FIT_THREADS] = "1"
    with core_taken(args.busy):
        results = {pilot: measure(pilot, steps, args.reps, args.records, run_dir)
                   for pilot, steps in (("finetune", args.steps), ("finetune+rag", args.rag_steps))}
    figures = {p: r["figures"] for p, r in results.items()}
    rag, plain = figures["finetune+rag"], figures["finetune"]
    checks = {
        "rag_speedup": verdict(rag["speedup_seconds_per_step"], TARGETS["speedup_min"]),
        "plain_speedup": verdict(plain["speedup_seconds_per_step"], TARGETS["speedup_min"]),
        "rag_peak_memory": verdict(rag["now_peak_memory_mb"] / 1024, TARGETS["rag_peak_memory_gb_max"], False),
        "loss_per_record": verdict(max(rag["loss_per_record_max_rel_diff"], plain["loss_per_record_max_rel_diff"]),
                                   TARGETS["loss_rel_diff_max"], False),
    }
    params = {"task": "examples/manual-qa", "model": "bundled SmolLM2-135M-Instruct", "dtype": "float32",
              "device": "cpu", "adapter": "the pilot's LoRA (baselines.finetune)", "steps": args.steps,
              "rag_steps": args.rag_steps, "reps": args.reps, "records_compared": args.records,
              "timing": "TrainResult.train_seconds / steps (trainer.train()); CPU s/step: the process's CPU time "
                        "over train_sft (tokenisation included) / steps, steadier than wall time on a shared machine; "
                        "tokens = non-pad tokens; "
                        "peak = sampled RSS of the run's own process during train_sft"}
    if args.busy:
        params["busy"] = ("another process ran `while True: pass` throughout; 'before' on torch's own threads, "
                          "'now' on foundation.threads.fit_threads()")
    write_result(NAME + ("-busy" if args.busy else ""), figures={**figures, "checks": checks}, parameters=params,
                 target=TARGETS,
                 raw={p: r["raw"] for p, r in results.items()})
    print(f"\npilot — {machine_line()}")
    rows = []
    for p, f in figures.items():
        rows += [(f"{p} s/step before → now", f"{f['before_seconds_per_step']:.2f} → {f['now_seconds_per_step']:.2f}"),
                 (f"{p} tokens/s before → now", f"{f['before_tokens_per_second']:.0f} → {f['now_tokens_per_second']:.0f}"),
                 (f"{p} speed-up (s/step)", f["speedup_seconds_per_step"]),
                 (f"{p} speed-up (CPU s/step)", f["speedup_cpu_seconds_per_step"]),
                 (f"{p} peak GB before → now",
                  f"{f['before_peak_memory_mb'] / 1024:.2f} → {f['now_peak_memory_mb'] / 1024:.2f}"),
                 (f"{p} max loss rel. diff (records, steps)",
                  f"{f['loss_per_record_max_rel_diff']:.1e}, {f['step_loss_max_rel_diff']:.1e}")]
    print_table(rows + [(k, v) for k, v in checks.items()])
    ok = all(v == "met" for v in checks.values())
    return {"name": NAME, "headline": f"FT + RAG {rag['speedup_seconds_per_step']:.2f}× s/step, "
                                      f"peak {rag['now_peak_memory_mb'] / 1024:.1f} GB",
            "target": "≥ 1.6× s/step, FT + RAG < 4 GB, same loss", "status": "met" if ok else "MISSED"}


if __name__ == "__main__":
    main()
