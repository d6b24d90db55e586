"""Sweep throughput: where a trial's time goes, and trials per hour, for ``advise tune`` of the
extract-email example (135M model, 20 steps a trial), with one base model per worker (today) and
a fresh load for every trial (before).

Both runs go through ``advisor.pipeline.tune_task``; "before" turns off the base-model reuse of
``training.trial.TrainingKit`` by patching it in this file. Each trial records its seconds by phase
(load_model, trainer_setup, optimizer_steps, validation, latency, save, other: see
``training/trial.py``); the figures are their sums over the trials, trials per hour of wall time,
and the share of a trial's time spent in optimiser steps.

    python bench/bench_sweep_cuda.py [--trials 8] [--max-steps 20]
    python bench/bench_sweep_cuda.py --cpu-debug   # on CPU with the tiny model (figures meaningless)
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import ROOT, machine_line, print_table, quiet_libraries, write_result

NAME = "sweep_cuda"


def _task(folder: Path, args, device: str) -> Path:
    shutil.copytree(ROOT / "examples" / "extract-email", folder)
    text = (folder / "task.yaml").read_text()
    text = text.replace("model: default ", f"model: {'tiny-random' if args.cpu_debug else 'default'} ")
    text = text.replace("seed: 0", f"seed: 0\ndevice: {device}")
    text = text.replace("  n_trials: 4\n  max_steps: 30\n", f"  n_trials: {args.trials}\n  max_steps: {args.max_steps}\n")
    (folder / "task.yaml").write_text(text)
    return folder / "task.yaml"


def run(args, reuse: bool, device: str) -> dict:
    from advisor.pipeline import tune_task
    from advisor.tasks import load_task
    from training import trial as trial_module

    folder = Path(tempfile.mkdtemp(prefix="advise-sweep-")) / "extract-email"
    task = load_task(_task(folder, args, device))
    original = trial_module.TrainingKit.__init__

    def no_reuse(self, *a, **kw):
        original(self, *a, **kw)
        self.reuse_base = False

    if not reuse:
        trial_module.TrainingKit.__init__ = no_reuse
    try:
        t0 = time.perf_counter()
        results = tune_task(task)
        wall = time.perf_counter() - t0
    finally:
        trial_module.TrainingKit.__init__ = original
    trained = [t for t in results.study.trials if t.phases]
    phases: dict[str, float] = {}
    for t in trained:
        for k, v in t.phases.items():
            phases[k] = phases.get(k, 0.0) + v
    trial_seconds = sum(t.trial_seconds or 0.0 for t in trained)
    shutil.rmtree(folder.parent, ignore_errors=True)
    return {"reuse_base": reuse, "trials": len(results.study.trials), "trained_trials": len(trained),
            "states": [t.state for t in results.study.trials], "study_wall_seconds": wall,
            "trials_per_hour": 3600 * len(results.study.trials) / wall if wall else None,
            "seconds_per_trained_trial": trial_seconds / len(trained) if trained else None,
            "phase_seconds": phases, "optimizer_step_share": phases.get("optimizer_steps", 0.0) / trial_seconds
            if trial_seconds else None, "per_trial": [{"number": t.number, "method": t.method, "state": t.state,
                                                       "steps": t.steps, "phases": t.phases} for t in trained]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=20)
    ap.add_argument("--cpu-debug", action="store_true")
    args = ap.parse_args(argv)
    quiet_libraries()
    import torch

    if not torch.cuda.is_available() and not args.cpu_debug:
        write_result(NAME, figures={}, parameters=vars(args), status="skipped: no CUDA", notes=["skipped: no CUDA"])
        print("sweep_cuda — skipped: no CUDA")
        return {"name": NAME, "headline": "skipped: no CUDA", "target": "—", "status": "skipped"}
    device = "cpu" if args.cpu_debug else "cuda"
    runs = [run(args, reuse=False, device=device), run(args, reuse=True, device=device)]
    write_result(NAME, figures={"before": runs[0], "after": runs[1]}, parameters=vars(args),
                 status="ok" if not args.cpu_debug else "debug: cpu",
                 notes=["before = a fresh base model for every trial; after = one per worker, weights restored"])
    print(f"\nsweep_cuda — {machine_line()}")
    keys = sorted({k for r in runs for k in r["phase_seconds"]})
    print_table([(("after" if r["reuse_base"] else "before"), f"{r['trials_per_hour']:.0f}",
                  f"{r['optimizer_step_share']:.0%}", *(f"{r['phase_seconds'].get(k, 0):.1f}" for k in keys))
                 for r in runs], header=("run", "trials/h", "steps share", *keys))
    return {"name": NAME, "headline": f"{runs[1]['trials_per_hour']:.0f} trials/h "
                                      f"(before {runs[0]['trials_per_hour']:.0f})", "target": "—", "status": "ok"}


if __name__ == "__main__":
    main()
