"""Every path a run writes is checked before the run (tests/bad_inputs/run-*), and when the system
still refuses a write at the end, the error names the user's path, never a temporary one."""
from __future__ import annotations

import pytest

from commands.cli import main
from foundation.results import Results, save_results
from reports.html import write_html
from tests.conftest import write_task


def _results() -> Results:
    return Results(advise_version="0", created="now", task={}, environment={}, data={}, candidates=[])


def test_a_write_refused_at_the_end_names_the_users_path(tmp_path):
    (tmp_path / "results.json").mkdir()
    with pytest.raises(OSError) as e:
        save_results(_results(), tmp_path)
    assert e.value.filename == str(tmp_path / "results.json")
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind


def test_report_html_of_the_wrong_kind_is_one_line_naming_it(tmp_path, capsys):
    run_dir = tmp_path / "r"
    save_results(_results(), run_dir)
    (run_dir / "report.html").mkdir()
    with pytest.raises(OSError) as e:
        write_html(_results(), run_dir)
    assert e.value.filename == str(run_dir / "report.html")
    assert main(["report", str(run_dir), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {run_dir / 'report.html'}: is a directory\n"


def test_validate_checks_every_kind_of_output_path(tmp_path, capsys):
    path = write_task(tmp_path / "t")
    run_dir = tmp_path / "t" / "runs" / "tiny-task"
    for rel, make_folder in (("adapters/best", False), ("rag/meta.json", True), ("trials.csv", True)):
        target = run_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir() if make_folder else target.write_text("x")
        assert main(["validate", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: output.dir: {target} is a ") and "but a run writes" in err, err
        target.rmdir() if make_folder else target.unlink()
    assert main(["validate", str(path)]) == 0
