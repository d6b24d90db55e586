"""A re-run never costs the last good result: results.json and the study (study.db) are rotated so
the last ones that measured something survive any sequence of runs, and `advise tune` refuses to
start a fresh study over a finished one without --resume or --fresh."""
from __future__ import annotations

import json
import textwrap

from commands.cli import main
from advisor.pipeline import keep_previous, tune_task
from advisor.tasks import load_task
from tests.test_tuner_study import QUICK, write_task
from tuner.storage import finished_trials



def test_results_prev_keeps_the_last_results_that_measured_something(tmp_path):
    measured = json.dumps({"candidates": [{"name": "prompt"}]})
    (tmp_path / "results.json").write_text(measured)
    keep_previous(tmp_path)
    assert (tmp_path / "results.prev.json").read_text() == measured
    # a run that measured nothing (stopped before its first baseline, an empty study) is not kept over it
    (tmp_path / "results.json").write_text(json.dumps({"candidates": [], "study": {"trials": [{"state": "failed"}]}}))
    keep_previous(tmp_path)
    keep_previous(tmp_path)
    assert (tmp_path / "results.prev.json").read_text() == measured
    studied = json.dumps({"candidates": [], "study": {"trials": [{"state": "pruned"}]}})
    (tmp_path / "results.json").write_text(studied)
    keep_previous(tmp_path)
    assert (tmp_path / "results.prev.json").read_text() == studied


def test_a_finished_study_survives_fresh_studies_that_measure_nothing(tmp_path, capsys):
    path = write_task(tmp_path / "t", name="rot", tune=textwrap.dedent(QUICK))
    run_dir = tmp_path / "t" / "runs" / "rot"
    assert main(["tune", str(path), "--quiet"]) == 0
    found = finished_trials(run_dir / "study.db")
    assert found[0] == 1 and found[1] is not None
    first = json.loads((run_dir / "results.json").read_text())
    assert [t["state"] for t in first["study"]["trials"]] == ["complete"]
    capsys.readouterr()

    # without --resume or --fresh: refused before anything loads, naming the study and its numbers
    assert main(["tune", str(path), "--quiet", "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {run_dir / 'study.db'}: holds a study with 1 finished trial, best validation quality "
        f"{found[1]:.3f}; continue it with `advise tune --resume`, or start a new one with --fresh "
        "(this one is then kept as study.db.prev)"], err
    assert finished_trials(run_dir / "study.db") == found
    assert main(["tune", str(path), "--quiet", "--resume", "--fresh"]) == 2
    capsys.readouterr()

    # two fresh studies that measure nothing: the finished one stays in study.db.prev, its results in results.prev.json
    for _ in range(2):
        tune_task(load_task(path), fresh=True, n_trials=0)  # (the API: --n-trials 0 is the CLI's to refuse)
        assert finished_trials(run_dir / "study.db") == (0, None)
        assert finished_trials(run_dir / "study.db.prev") == found
        prev = json.loads((run_dir / "results.prev.json").read_text())
        assert prev["study"]["trials"] == first["study"]["trials"]
        assert json.loads((run_dir / "results.json").read_text())["study"]["trials"] == []
