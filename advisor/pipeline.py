"""`advise run`: load, measure every baseline, decide, (tune), save. One straight line.

results.json is rewritten after every stage with ``status: interrupted`` until the end, so a
crash or Ctrl-C never loses a measured baseline.
"""
from __future__ import annotations

import datetime as _dt
import time

from advisor.data import display_path
from advisor.errors import AdviseError
from advisor.progress import QUIET, Progress
from advisor.results import Results, save_results


def environment(device: str) -> dict:
    import os
    import platform

    import torch

    env = {"python": platform.python_version(), "platform": platform.platform(), "device": device,
           "cpu": _cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    for pkg in ("torch", "transformers", "peft", "trl", "datasets", "sentence_transformers", "faiss", "optuna"):
        try:
            env[pkg] = __import__(pkg).__version__
        except Exception:  # optional or oddly packaged: record that it is absent
            env[pkg] = None
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
    import advisor

    env["advise"] = advisor.__version__
    return env


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def quiet_libraries() -> None:
    """Library progress bars and info logs would drown our own progress display."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Renamed-argument notices (e.g. gradient_checkpointing) that the trainer triggers, not the user.
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run_task(task, progress: Progress = QUIET, *, tune: bool = True) -> Results:
    """Measure the enabled baselines on the eval split, decide, and run the study if fine-tuning wins."""
    import advisor
    from advisor.data import load_corpus, load_splits
    from advisor.models import load_model, load_tokenizer, pick_device, resolve_model
    from advisor.verdict import decide
    from baselines.base import ORDER, RunContext, load_all

    quiet_libraries()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    splits = load_splits(task)
    corpus = load_corpus(task)
    device = pick_device(task.device)
    run_dir = task.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    timings["load_data"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    source = resolve_model(task.model, task.base_dir)
    with progress.task(f"Loading model {task.model}", total=None):
        try:
            tokenizer = load_tokenizer(source, task.trust_remote_code)
            model = load_model(source, device=device, trust_remote_code=task.trust_remote_code, seed=task.seed)
        except (OSError, ValueError) as e:  # transformers' errors for a folder or id it cannot load
            raise AdviseError(f"cannot load model {task.model!r}: {str(e).splitlines()[0]}",
                              file=display_path(task.source_path), where="model") from e
    timings["load_model"] = time.perf_counter() - t0

    results = Results(advise_version=advisor.__version__, status="interrupted",
                      created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                      task=task.model_dump(mode="json"), environment=environment(device), data=splits.stats,
                      candidates=[], timings=timings)
    timings = results.timings  # pydantic copied the dict: later stages must write to the results' own
    ctx = RunContext(task=task, splits=splits, corpus=corpus, model=model, tokenizer=tokenizer, device=device,
                     run_dir=run_dir, progress=progress)
    baselines = load_all()
    for name in ORDER:
        if not getattr(task.baselines, name).enabled:
            continue
        t0 = time.perf_counter()
        results.candidates.extend(baselines[name](ctx))
        timings[name] = time.perf_counter() - t0
        save_results(results, run_dir)

    pilot = ctx.extras.get("pilot")
    results.verdict = decide(results.candidates, task, pilot_config=pilot["config"] if pilot else None)
    save_results(results, run_dir)
    if results.verdict.finetune_wins and tune:
        from tuner.study import run_study

        t0 = time.perf_counter()
        del ctx.model, model  # the study loads its own copies
        results.study = run_study(task, splits, run_dir=run_dir, progress=progress, pilot=pilot)
        timings["tune"] = time.perf_counter() - t0
    results.status = "complete" if results.study is None or results.study.status == "complete" else "interrupted"
    save_results(results, run_dir)
    return results
