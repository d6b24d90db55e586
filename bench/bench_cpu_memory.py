"""Peak memory of a CPU DPO run with long prompts: the micro-batch token cap against none.

On CPU ``training.training.prepare_device`` splits a batch into micro-batches of at most
``CPU_MICRO_TOKENS`` sequence tokens (gradient accumulation keeps the effective batch). This runs
the ``dpo`` objective on the bundled SmolLM2-135M-Instruct (fp32, LoRA r=8) on pairs whose prompts
are as long as an FT + RAG prompt with retrieved pages (~450 tokens), batch 8 pairs, twice: with
the cap and with it lifted. Each side runs in its own process; its peak resident memory is the
child's ``ru_maxrss``. The sides alternate (capped, uncapped, capped, ...); figures are medians.

    python bench/bench_cpu_memory.py [--steps 3] [--reps 1] [--batch-size 8] [--prompt-tokens 450]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

from common import machine_line, median, print_table, verdict, write_result

NAME = "cpu_memory"
TARGET = 0.6  # capped peak memory at most this share of the uncapped one

CHILD = r"""
import json, sys
sys.path.insert(0, {repo!r})
from foundation.config import PromptConfig
from foundation.models import load_model, load_tokenizer, resolve_model
from foundation.records import Record
from peft import LoraConfig
from training import training
from training.objectives import OBJECTIVES, TrainingJob
import tuner  # registers the objectives
if not {capped}:
    training.CPU_MICRO_TOKENS = 10**9
source = resolve_model("default")
tokenizer = load_tokenizer(source)
page = ("Returns are free within 45 days of delivery; the item must be unused and in its packaging. "
        "Refunds reach the original payment method within 5 working days of the return arriving. ")
words = page.split()
filler = " ".join(words[i % len(words)] for i in range({prompt_tokens} * 3 // 4))
records = [Record(input=f"Articles: {{filler}}\n\nCustomer {{i}}: how long do I have to return my chair?",
                  output=f"Hi customer {{i}}, you have 45 days from delivery. — Care",
                  rejected=f"Hi customer {{i}}, you have 14 days. — Care") for i in range(16)]
settings = training.TrainSettings(max_steps={steps}, epochs=1000.0, learning_rate=1e-4, batch_size={batch},
                                  max_seq_length={prompt_tokens} + 64, seed=0)
job = TrainingJob(model=load_model(source, device="cpu"), tokenizer=tokenizer, records=records,
                  prompt=PromptConfig(system="You answer customers.", template="{{input}}"), settings=settings,
                  adapter=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                     task_type="CAUSAL_LM"),
                  params={{"beta": 0.1, "loss_type": "sigmoid"}}, callbacks=[])
result = OBJECTIVES["dpo"].train(job)
print(json.dumps({{"steps": result.steps, "train_seconds": result.train_seconds,
                  "micro_batch": settings.batch_size, "grad_accum": settings.grad_accum}}))
"""


def run_side(capped: bool, args) -> dict:
    code = CHILD.format(repo=str(Path(__file__).resolve().parents[1]), capped=capped, steps=args.steps,
                        batch=args.batch_size, prompt_tokens=args.prompt_tokens)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # this process's only child
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**out, "peak_rss_gb": peak_kb / 1024 / 1024, "seconds_per_step": out["train_seconds"] / out["steps"]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompt-tokens", type=int, default=450)
    p.add_argument("--_side", choices=("capped", "uncapped"), help=argparse.SUPPRESS)
    return p


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    print(machine_line())
    # RUSAGE_CHILDREN's ru_maxrss is a running maximum over all children: each side is run from
    # a fresh process of its own (--_side), whose one child is the training.
    sides = {"capped": [], "uncapped": []}
    for _ in range(args.reps):
        for capped in (True, False):
            code = [sys.executable, __file__, "--_side", "capped" if capped else "uncapped", "--steps", str(args.steps),
                    "--batch-size", str(args.batch_size), "--prompt-tokens", str(args.prompt_tokens)]
            out = subprocess.run(code, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-3000:])
            sides["capped" if capped else "uncapped"].append(json.loads(out.stdout.strip().splitlines()[-1]))
    capped, uncapped = (median([s["peak_rss_gb"] for s in sides[k]]) for k in ("capped", "uncapped"))
    step_c, step_u = (median([s["seconds_per_step"] for s in sides[k]]) for k in ("capped", "uncapped"))
    ratio = capped / uncapped
    figures = {"peak_rss_gb_capped": capped, "peak_rss_gb_uncapped": uncapped, "peak_ratio": ratio,
               "step_seconds_capped": step_c, "step_seconds_uncapped": step_u, "step_ratio": step_c / step_u,
               "capped_micro_batch": sides["capped"][0]["micro_batch"],
               "capped_grad_accum": sides["capped"][0]["grad_accum"]}
    print_table([("peak memory capped / uncapped (GB)", f"{capped:.2f} / {uncapped:.2f}"),
                 ("peak ratio", ratio), ("step seconds capped / uncapped", f"{step_c:.2f} / {step_u:.2f}"),
                 ("capped micro-batch × accumulation", f"{figures['capped_micro_batch']} × {figures['capped_grad_accum']}"),
                 ("target: peak ratio ≤", TARGET), ("result", verdict(ratio, TARGET, higher_is_better=False))])
    write_result(NAME, figures=figures, parameters=vars(args),
                 target={"peak_ratio_at_most": TARGET, "met": ratio <= TARGET}, raw=sides,
                 notes=["each side is a fresh process; peak = that process's ru_maxrss"])
    return figures


if __name__ == "__main__":
    cli = parser().parse_args()
    if cli._side:  # one side, run from the driver in a process of its own
        print(json.dumps(run_side(cli._side == "capped", cli)))
    else:
        main()
