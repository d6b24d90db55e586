"""The two commands that measure: ``advise run`` (baselines → verdict → study when fine-tuning
wins) and ``advise tune`` (the study on its own). Each stage is one straight line.

results.json is rewritten after every stage with ``status: interrupted`` until the end, so a
crash or Ctrl-C never loses a measured baseline.
"""
from __future__ import annotations

import time

from foundation.errors import AdviseError
from foundation.paths import display_path
from foundation.progress import QUIET, Progress
from foundation.results import Results, load_results, save_results
from foundation.runinfo import new_results, quiet_libraries, run_dir_lock
from foundation.threads import fit_threads, pinned_threads


def run_task(checked, progress: Progress = QUIET, *, tune: bool = True, seeds: int = 1) -> Results:
    """Measure the enabled baselines on the eval split, decide, and run the study if fine-tuning wins.

    ``checked`` is what ``advisor.tasks.check_task`` returns (a task.yaml path or a loaded task is
    checked here first). ``seeds`` > 1 repeats the measurement with other seeds and says whether
    the verdict is stable (``advisor.stability``).
    """
    from advisor.tasks import CheckedTask, check_task

    quiet_libraries()
    pinned_threads()  # a bad ADVISE_THREADS is one line before anything runs
    t0 = time.perf_counter()
    checked = checked if isinstance(checked, CheckedTask) else check_task(checked)
    check_seeds(checked.task, seeds)
    with run_dir_lock(checked.task.run_dir, task_file=display_path(checked.task.source_path)):
        keep_previous(checked.task.run_dir)
        return _run(checked, progress, tune, time.perf_counter() - t0, seeds)


_NO_VALIDATION = ("the study chooses among its trials on validation records, and this task holds none out "
                  "(data.validation_fraction is 0, or fewer than 10 train records: add train records)")


MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are 32-bit


def check_seeds(task, seeds: int) -> None:
    """``--seeds N`` measures with ``seed`` … ``seed + N - 1``; each must be a seed the libraries take."""
    last = task.seed + seeds - 1
    if last > MAX_SEED:
        raise AdviseError(f"seeds {task.seed} … {last} go past the largest seed, {MAX_SEED}: lower `seed` in the task "
                          f"file or --seeds", file=display_path(task.source_path) if task.source_path else None,
                          where="--seeds")


def keep_previous(run_dir) -> None:
    """The last run's results.json is copied to results.prev.json before this run rewrites it, when
    it measured something (a candidate or a finished trial): results.prev.json always holds the
    last results that did, whatever runs stop early or measure nothing in between."""
    import shutil

    current = run_dir / "results.json"
    if current.is_file() and _measured(current):
        shutil.copy2(current, run_dir / "results.prev.json")


def _measured(path) -> bool:
    """Whether a results file holds a measurement; one that cannot be read is kept, to be safe."""
    import json

    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return True
    if not isinstance(raw, dict):
        return True
    study = raw.get("study") if isinstance(raw.get("study"), dict) else {}
    trials = study.get("trials") if isinstance(study.get("trials"), list) else []
    return bool(raw.get("candidates")) or any(isinstance(t, dict) and t.get("state") in ("complete", "pruned")
                                               for t in trials)


def _run(checked, progress: Progress, tune: bool, load_data: float, seeds: int = 1) -> Results:
    from decision.verdict import decide
    from baselines.base import RunContext
    from foundation.models import load_model, load_tokenizer, pick_device, resolve_model

    task, splits, corpus = checked.task, checked.splits, checked.corpus
    device = pick_device(task.device)
    run_dir = task.run_dir

    t0 = time.perf_counter()
    source = resolve_model(task.model, task.base_dir)
    with progress.task(f"Loading model {task.model}", total=None):
        try:
            tokenizer = load_tokenizer(source, task.trust_remote_code)
            model = load_model(source, device=device, trust_remote_code=task.trust_remote_code, seed=task.seed)
        except AdviseError:
            raise
        except Exception as e:  # transformers' errors for a folder or id it cannot load
            raise AdviseError(f"cannot load model {task.model!r}: {str(e).splitlines()[0]}",
                              file=display_path(task.source_path), where="model") from e
    results = new_results(task, device, splits.stats)
    results.timings.update(load_data=load_data, load_model=time.perf_counter() - t0)

    ctx = RunContext(task=task, splits=splits, corpus=corpus, model=model, tokenizer=tokenizer, device=device,
                     run_dir=run_dir, progress=progress)
    _measure_baselines(ctx, results)

    results.verdict = decide(results.candidates, task)
    results.verdict.cautions.extend(ctx.extras.get("not_measured", []))
    save_results(results, run_dir)
    if seeds > 1:
        t0 = time.perf_counter()
        _repeat_with_seeds(ctx, results, seeds)
        results.timings["seeds"] = time.perf_counter() - t0
        save_results(results, run_dir)
    if results.verdict.finetune_wins and tune and not splits.validation:
        results.verdict.cautions.append("no study was run: " + _NO_VALIDATION)
    elif results.verdict.finetune_wins and tune:
        from tuner.study import run_study

        t0 = time.perf_counter()
        ctx.model = model = None  # the study loads its own copies
        winner = results.verdict.winner
        # A winner trained on other records (distillation: a compared model's answers) is tuned on them.
        trained_on = ctx.extras.get("splits", {}).get(winner, splits)
        results.study = run_study(task, trained_on, run_dir=run_dir, progress=progress,
                                  pilot=results.candidate(winner).config, corpus=corpus,
                                  prompts=ctx.extras.get("prompts", {}).get(winner))
        _note_distilled(results, results.candidate(winner), trained_on)
        results.timings["tune"] = time.perf_counter() - t0
    results.status = "complete" if results.study is None or results.study.status == "complete" else "interrupted"
    save_results(results, run_dir)
    return results


def _measure_baselines(ctx, results: Results) -> None:
    """Each enabled baseline in turn, on the threads the machine leaves free now; saved after each."""
    from baselines.base import load_all

    threads = results.environment.setdefault("torch_threads_by_stage", {})
    for name, baseline in load_all().items():
        if not baseline.enabled(ctx.task):
            continue
        threads[name] = fit_threads(ctx.device)  # one per core other processes leave free (foundation.threads)
        t0 = time.perf_counter()
        results.candidates.extend(baseline.run(ctx))
        results.timings[name] = time.perf_counter() - t0
        save_results(results, ctx.run_dir)


def _note_distilled(results: Results, winner, splits) -> None:
    """The study's notes say when it trained on a compared model's answers (a distilled winner)."""
    if winner is not None and winner.baseline == "distill" and results.study is not None:
        report = winner.details.get("distillation") or {}
        results.study.notes.append(f"trained on {len(splits.train)} answers written by {report.get('teacher')} "
                                   f"({report.get('answers_file')}), as the winner {winner.name} was")


def _repeat_with_seeds(ctx, results: Results, seeds: int) -> None:
    """Measure again with seeds task.seed + 1 … + seeds - 1 (each in runs/<name>/seeds/<seed>/) and
    add the stability of the verdict to results and to the verdict's words."""
    from dataclasses import replace

    from advisor.stability import seed_run, summarize_seeds
    from decision.verdict import decide
    from baselines.base import load_all

    task = ctx.task
    first = {c.name: c for c in results.candidates}
    runs = [seed_run(task.seed, results.verdict, results.candidates)]
    for i in range(1, seeds):
        seeded = task.model_copy(update={"seed": task.seed + i})
        ctx.progress.log(f"seed {seeded.seed} ({i + 1} of {seeds})")
        again = replace(ctx, task=seeded, extras={}, repeat_of=first, output_dir=ctx.run_dir / "seeds" / str(seeded.seed))
        candidates = [c for b in load_all().values() if b.enabled(seeded) for c in b.run(again)]
        runs.append(seed_run(seeded.seed, decide(candidates, seeded), candidates))
    baselines = {c.name: c.baseline for c in results.candidates}
    results.stability = summarize_seeds(runs, baselines, task.verdict.min_gain)
    verdict = results.verdict
    (verdict.reasons if results.stability.stable else verdict.cautions).insert(
        len(verdict.reasons) if results.stability.stable else 0, results.stability.summary)


def tune_task(task, *, progress: Progress = QUIET, resume: bool = False, storage: str | None = None,
              n_trials: int | None = None, study_name: str | None = None, fresh: bool = False) -> Results:
    """``advise tune``: load the data, run (or resume, or join) the study, save results.json.

    An existing ``runs/<name>/results.json`` (from ``advise run``) keeps its baselines and
    verdict and gains the study, starting from its pilot; otherwise a results file with the
    study alone is written. ``study_name`` names the study in its storage (default: the task's name).
    A study with finished trials in ``runs/<name>/study.db`` is continued with ``resume``, set
    aside as study.db.prev with ``fresh``, and otherwise refused before anything loads.
    """
    from advisor.tasks import check_task
    from tuner.storage import check_storage_url

    quiet_libraries()
    pinned_threads()
    if storage is not None and (problem := check_storage_url(storage)):
        raise AdviseError(problem, where="--storage")
    checked = check_task(task)
    if not checked.splits.validation:
        raise AdviseError(_NO_VALIDATION, file=display_path(task.source_path),
                          where="data.validation_fraction" if task.data.validation_fraction == 0 else "data.train")
    with run_dir_lock(task.run_dir, shared=True, task_file=display_path(task.source_path)):
        if not (resume or fresh or storage or task.tune.storage):
            _refuse_fresh_over_finished(task.run_dir)
        keep_previous(task.run_dir)
        return _tune(checked, progress, resume, storage, n_trials, study_name)


def _refuse_fresh_over_finished(run_dir) -> None:
    """A new study would set aside a study that measured something: say what it holds and ask."""
    from tuner.storage import describe_finished, finished_trials

    found = finished_trials(run_dir / "study.db")
    if found and found[0]:
        raise AdviseError(f"holds a study with {describe_finished(found)}; continue it with `advise tune --resume`, "
                          "or start a new one with --fresh (this one is then kept as study.db.prev)",
                          file=display_path(run_dir / "study.db"))


def _tune(checked, progress: Progress, resume: bool, storage: str | None, n_trials: int | None,
          study_name: str | None) -> Results:
    from foundation.models import pick_device
    from tuner.study import run_study

    task, splits = checked.task, checked.splits
    run_dir = task.run_dir
    if resume and not (storage or task.tune.storage) and not (run_dir / "study.db").exists():
        raise AdviseError(f"nothing to resume: {run_dir / 'study.db'} does not exist; run without --resume")
    if (run_dir / "results.json").exists():
        results = load_results(run_dir)
    else:
        results = new_results(task, pick_device(task.device), splits.stats)
    verdict = results.verdict
    winner = results.candidate(verdict.winner) if verdict is not None and verdict.finetune_wins else None
    if winner is not None and winner.baseline == "distill":  # tuned on the answers the winner trained on
        from baselines.distill import reload_distilled

        splits = reload_distilled(splits, run_dir, winner)
    t0 = time.perf_counter()
    results.study = run_study(task, splits, run_dir=run_dir, progress=progress,
                              pilot=winner.config if winner is not None and winner.config else results.finetuned_config(),
                              storage=storage, n_trials=n_trials, resume=resume, study_name=study_name,
                              corpus=checked.corpus, prompts=study_prompts(checked, results, progress))
    _note_distilled(results, winner, splits)
    results.timings["tune"] = time.perf_counter() - t0
    results.status = "complete" if results.study.status == "complete" else "interrupted"
    save_results(results, run_dir)
    return results


def study_prompts(checked, results: Results, progress: Progress = QUIET):
    """When FT + RAG won the run, ``advise tune`` searches fine-tunes that train and answer with
    retrieval, as ``advise run`` would have gone on to; otherwise the task's own prompts (None)."""
    verdict = results.verdict
    if verdict is None or not verdict.finetune_wins:
        return None
    winner = next((c for c in results.candidates if c.name == verdict.winner), None)
    if winner is None or winner.baseline != "finetune_rag":
        return None
    from baselines.base import RunContext
    from baselines.finetune_rag import study_prompts as hybrid_prompts
    from foundation.models import pick_device

    task = checked.task
    ctx = RunContext(task=task, splits=checked.splits, corpus=checked.corpus, model=None, tokenizer=None,
                     device=pick_device(task.device), run_dir=task.run_dir, progress=progress)
    return hybrid_prompts(ctx)
