"""`advise export`: the recommended trial as a PEFT adapter, or merged into a full model.

The adapter is in standard PEFT format::

    from peft import PeftModel
    model = PeftModel.from_pretrained(base_model, "out/")

With ``--merge`` the adapter is folded into the base weights (``merge_and_unload``) and the
result saved with ``save_pretrained`` next to the tokenizer, so
``AutoModelForCausalLM.from_pretrained("out/")`` loads it without PEFT. Prompt, prefix and
P-tuning add virtual tokens rather than weight updates and cannot be merged.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from foundation.errors import AdviseError
from training.artifacts import RECORD_FILE, TrialRecord, load_trained


def best_dir(run_dir: Path) -> Path:
    """The recommended trial's saved adapter in a run directory; when the study stopped before it
    recommended one (Ctrl-C, a killed worker), the best finished trial in its database."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AdviseError("not a run directory", file=run_dir)
    path = run_dir / "adapters" / "best"
    if (run_dir / "results.json").exists():
        from foundation.results import load_results

        study = load_results(run_dir).study
        if study is not None and study.best_adapter_dir:
            path = run_dir / study.best_adapter_dir
    if not (path / RECORD_FILE).exists():
        path = _best_finished_trial(run_dir) or path
    if not (path / RECORD_FILE).exists():
        raise AdviseError("no tuned adapter here; run `advise tune task.yaml` first (or wait for a trial to finish)",
                          file=run_dir)
    return path


def _best_finished_trial(run_dir: Path) -> Path | None:
    """The saved adapter of the highest-scoring complete trial in ``run_dir/study.db``."""
    db = run_dir / "study.db"
    if not db.is_file():
        return None
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        storage = f"sqlite:///{db.resolve()}"
        trials = [t for s in optuna.get_all_study_summaries(storage)
                  for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(
                      deepcopy=False, states=(TrialState.COMPLETE,))]
    except Exception as e:  # a damaged database: say which file
        raise AdviseError(f"cannot read the study: {str(e).splitlines()[0]}", file=db) from None
    saved = [t for t in trials if t.value is not None and (run_dir / t.user_attrs.get("adapter_dir", "-")).is_dir()]
    if not saved:
        return None
    best = max(saved, key=lambda t: (t.value, -t.number))
    return run_dir / best.user_attrs["adapter_dir"]


def export_best(run_dir: str | Path, out: str | Path, merge: bool = False) -> Path:
    """Write the best trial to ``out``: the adapter, or with ``merge`` a full model; returns ``out``."""
    source = best_dir(Path(run_dir))
    out = Path(out)
    record = TrialRecord.read(source)
    if out.exists() and not out.is_dir():
        raise AdviseError("is a file; --out must be a folder to write the model into", file=out)
    if out.exists() and any(out.iterdir()):
        raise AdviseError("already exists and is not empty; choose another --out", file=out)
    if not merge or record.full_model:  # a full model is already merged
        shutil.copytree(source, out, dirs_exist_ok=True)
        return out
    if not record.mergeable:
        raise AdviseError(f"a {record.method} adapter adds virtual tokens, not weight updates, so it cannot be "
                          "merged; export it without --merge and load it with PeftModel.from_pretrained")
    model, tokenizer = load_trained(source, device="cpu")
    merged = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / RECORD_FILE).write_text(record.model_dump_json(indent=2), encoding="utf-8")
    return out
