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
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import median, print_table, write_result

NAME = "threads"
HOG = "while True: pass"


def child(arm: str, steps: int, run_dir: Path) -> dict:
    import torch

    from bench_pilot import model_and_adapter, pilot_setup
    from foundation.threads import fit_threads
    from training import training
    from training.trial import train_settings

    task, tokenizer, records, messages_for, config = pilot_setup("finetune", run_dir)
    settings = train_settings(config, micro_batch_size=int(config.params["batch_size"]), seed=task.seed)
    settings.max_steps, settings.time_budget_s = steps, None
    model, adapter = model_and_adapter(task, config)
    threads = fit_threads() if arm == "advise" else torch.get_num_threads()
    result = training.train_sft(model, tokenizer, records, prompt=task.prompt, settings=settings, adapter=adapter)
    return {"threads": threads, "seconds_per_step": result.train_seconds / result.steps, "steps": result.steps,
            "final_loss": result.final_loss}


def run_child(arm: str, steps: int, run_dir: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--_child", arm, str(steps), str(run_dir)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scenario(name: str, steps: int, reps: int, run_dir: Path) -> dict:
    hog = subprocess.Popen([sys.executable, "-c", HOG]) if name == "busy" else None
    runs = {"torch": [], "advise": []}
    try:
        time.sleep(1.0)
        for _ in range(reps):
            for arm in runs:
                runs[arm].append(run_child(arm, steps, run_dir))
                r = runs[arm][-1]
                print(f"  {name} {arm}: {r['threads']} threads, {r['seconds_per_step']:.2f} s/step", flush=True)
    finally:
        if hog:
            hog.kill()
            hog.wait()
    fig = {f"{arm}_{key}": median([r[key] for r in rs]) for arm, rs in runs.items()
           for key in ("seconds_per_step", "threads")}
    fig["speedup"] = fig["torch_seconds_per_step"] / fig["advise_seconds_per_step"]
    return {"figures": fig, "runs": runs}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        from common import quiet_libraries

        quiet_libraries()
        out = child(args._child[0], int(args._child[1]), Path(args._child[2]))
        print(json.dumps(out))
        return out
    run_dir = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    results = {name: scenario(name, args.steps, args.reps, run_dir) for name in ("busy", "quiet")}
    figures = {name: r["figures"] for name, r in results.items()}
    rows = [(f"{name}: s/step torch ({f['torch_threads']:g} threads) → advise ({f['advise_threads']:g})",
             f"{f['torch_seconds_per_step']:.2f} → {f['advise_seconds_per_step']:.2f} ({f['speedup']:.2f}×)")
            for name, f in figures.items()]
    print_table(rows)
    params = {"task": "examples/manual-qa", "pilot": "plain (baselines.finetune)", "steps": args.steps,
              "reps": args.reps, "busy": f"one other process running `{HOG}` for the whole scenario"}
    write_result(NAME, figures=figures, parameters=params, raw={n: r["runs"] for n, r in results.items()})
    return figures


if __name__ == "__main__":
    main()
