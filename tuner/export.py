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
from tuner.artifacts import RECORD_FILE, TrialRecord, load_trained


def best_dir(run_dir: Path) -> Path:
    """The recommended trial's saved adapter in a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AdviseError("not a run directory", file=run_dir)
    path = run_dir / "adapters" / "best"
    results = run_dir / "results.json"
    if results.exists():
        from foundation.results import load_results

        study = load_results(run_dir).study
        if study is not None and study.best_adapter_dir:
            path = run_dir / study.best_adapter_dir
    if not (path / RECORD_FILE).exists():
        raise AdviseError("no tuned adapter here; run `advise tune task.yaml` first (or wait for a trial to finish)",
                          file=run_dir)
    return path


def export_best(run_dir: str | Path, out: str | Path, merge: bool = False) -> Path:
    """Write the best trial to ``out``: the adapter, or with ``merge`` a full model; returns ``out``."""
    source = best_dir(Path(run_dir))
    out = Path(out)
    record = TrialRecord.read(source)
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
