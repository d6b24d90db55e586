"""A trial without validation data is never a measured 0.0: a task that holds no validation
records out is refused before a study starts (`advise validate` for data.validation_fraction: 0,
`advise tune` for too few train records), and `advise run` runs no study and says why."""
from __future__ import annotations

import textwrap

import pytest

from commands.cli import main
from foundation.errors import AdviseError
from tests.test_tuner_study import QUICK as TUNE
from tests.test_tuner_study import write_task


def _task(tmp_path, rows: int | None = None, fraction: float = 0.2):
    path = write_task(tmp_path / "t", name="nv", tune=textwrap.dedent(TUNE))
    path.write_text(path.read_text().replace("validation_fraction: 0.2", f"validation_fraction: {fraction}"))
    if rows is not None:
        train = path.parent / "data" / "train.jsonl"
        train.write_text("".join(train.read_text().splitlines(keepends=True)[:rows]))
    return path


def test_validate_refuses_a_task_that_holds_no_validation_records_out(tmp_path, capsys):
    path = _task(tmp_path, fraction=0)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: data.validation_fraction: 0 holds no validation records out"), err


def test_tune_refuses_too_few_train_records_before_loading_a_model(tmp_path, capsys):
    path = _task(tmp_path, rows=6)
    assert main(["validate", str(path)]) == 0  # the scaffold's size: validate passes, the pilot has no curve
    capsys.readouterr()
    assert main(["tune", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: {path}: data.train: the study chooses among its trials on validation "
                                "records, and this task holds none out (data.validation_fraction is 0, or fewer "
                                "than 10 train records: add train records)"], err
    assert not (path.parent / "runs" / "nv" / "study.db").exists()


def test_run_study_refuses_to_score_trials_on_nothing(tmp_path):
    from advisor.tasks import load_task
    from foundation.data import load_splits
    from tuner.study import run_study

    task = load_task(_task(tmp_path, rows=6))
    splits = load_splits(task)
    assert splits.validation == []
    with pytest.raises(AdviseError, match="no validation records to measure the trials on"):
        run_study(task, splits, run_dir=task.run_dir)
    assert not (task.run_dir / "trials.csv").exists()
