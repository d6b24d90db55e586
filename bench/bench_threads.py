"""Threads on a shared CPU: torch's own count against the one ``advise run`` takes (foundation.threads).

The demo's plain pilot (examples/manual-qa, bundled SmolLM2-135M-Instruct, fp32, the pilot's LoRA)
trains ``--steps`` steps, each run its own process, in two scenarios:

- ``busy``: another process spins on one core for the whole scenario (``while True: pass``), as a
  second job or a neighbour on a shared machine does;
- ``quiet``: nothing else runs.

and two arms each, interleaved over ``--reps``: ``torch`` (one thread per core, torch's default) and
``advise`` (``fit_threads()`` before training: one thread per core the others leave free). Figures
are medians of s/step (``TrainResult.train_seconds / steps``).

    python bench/bench_threads.py [--steps 6] [--reps 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench_pilot import FIT_THREADS, run_child
from common import core_taken, median, print_table, write_result

NAME = "threads"


def train(arm: str, steps: int, run_dir: Path) -> dict:
    """The plain pilot's training on today's path (``bench_pilot``'s child), on torch's threads or advise's."""
    env = {k: v for k, v in os.environ.items() if k != FIT_THREADS}
    if arm == "advise":
        env[FIT_THREADS] = "1"
    return run_child("train", "finetune", "now", str(steps), str(run_dir), env=env)


def scenario(name: str, steps: int, reps: int, run_dir: Path) -> dict:
    runs = {"torch": [], "advise": []}
    with core_taken(name == "busy"):
        time.sleep(1.0)
        for _ in range(reps):
            for arm in runs:
                runs[arm].append(train(arm, steps, run_dir))
                r = runs[arm][-1]
                print(f"  {name} {arm}: {r['threads']} threads, {r['seconds_per_step']:.2f} s/step", flush=True)
    fig = {f"{arm}_{key}": median([r[key] for r in rs]) for arm, rs in runs.items()
           for key in ("seconds_per_step", "threads")}
    fig["speedup"] = fig["torch_seconds_per_step"] / fig["advise_seconds_per_step"]
    return {"figures": fig, "runs": runs}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    results = {name: scenario(name, args.steps, args.reps, run_dir) for name in ("busy", "quiet")}
    figures = {name: r["figures"] for name, r in results.items()}
    rows = [(f"{name}: s/step torch ({f['torch_threads']:g} threads) → advise ({f['advise_threads']:g})",
             f"{f['torch_seconds_per_step']:.2f} → {f['advise_seconds_per_step']:.2f} ({f['speedup']:.2f}×)")
            for name, f in figures.items()]
    print_table(rows)
    params = {"task": "examples/manual-qa", "pilot": "plain (baselines.finetune)", "steps": args.steps,
              "reps": args.reps, "busy": "one other process running `while True: pass` for the whole scenario"}
    write_result(NAME, figures=figures, parameters=params, raw={n: r["runs"] for n, r in results.items()})
    return figures


if __name__ == "__main__":
    main()
