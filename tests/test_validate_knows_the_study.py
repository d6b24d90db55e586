"""`advise validate` knows what the study will refuse: it calls the same applicability hooks the
study calls (training.methods, training.objectives). A list of only inapplicable entries is an error
(tests/bad_inputs/tune-*, kto-no-desirable-answer); some of a list skipped is a warning; what
the default list skips is said in the tune note."""
from __future__ import annotations

from commands.cli import main
from tests.conftest import write_task


def test_listed_methods_the_study_skips_are_a_warning(tmp_path, capsys):
    path = write_task(tmp_path / "t", extra="tune: {methods: [lora, bitfit]}")
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == ["warning: tune.methods: the study skips bitfit: the model has no bias terms, and BitFit "
                                "trains only biases"], err


def test_the_default_list_says_what_it_skips_in_the_tune_note(tmp_path, capsys):
    path = write_task(tmp_path / "t")
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    tune_note = next(line for line in out.splitlines() if line.startswith("  tune: "))
    assert "the study skips" in tune_note and "bitfit" in tune_note, out
    assert err == ""


def test_listed_objectives_the_data_cannot_train_are_a_warning(tmp_path, capsys):
    path = write_task(tmp_path / "t", extra="tune: {objectives: [sft, dpo]}")
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: tune.objectives: the study skips dpo (needs paired preference data"), err
