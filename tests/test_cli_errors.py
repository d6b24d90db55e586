"""Errors as a user meets them at the installed ``advise`` executable: usage errors are one line and
exit 2, two processes never corrupt a run's results, and a finished run's report survives odd values
and odd folder names."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import write_task

ADVISE = str(Path(sys.executable).with_name("advise"))  # the console script pip installed


def run(*args, cwd=None, timeout=120):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    return subprocess.run([ADVISE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


USAGE_ERRORS = [
    ((), "Missing command"),
    (("validate",), "Missing argument"),
    (("nosuch",), "No such command"),
    (("run", "--bogus", "task.yaml"), "No such option: --bogus"),
    (("tune", "task.yaml", "--n-trials", "abc"), "--n-trials"),
    (("report",), "Missing argument"),
    (("export", "runs/x"), "Missing option '--out'"),
    (("--nosuch",), "No such option"),
]


@pytest.mark.skipif(not Path(ADVISE).exists(), reason="the advise console script is not installed in this venv")
@pytest.mark.parametrize("args,message", USAGE_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_usage_errors_of_the_installed_executable_are_one_line(args, message, tmp_path):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert "--help" in lines[0]  # says where the usage is


@pytest.mark.skipif(not Path(ADVISE).exists(), reason="the advise console script is not installed in this venv")
def test_version_and_help_answer_without_error():
    from foundation import __version__

    v = run("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"advise {__version__}"
    h = run("--help")
    assert h.returncode == 0 and "validate" in h.stdout and h.stderr == ""


def test_two_writers_never_share_a_temporary_results_file(tmp_path):
    """Before, both wrote results.json.tmp: one renamed the other's file away (FileNotFoundError)."""
    from foundation.results import Results, load_results, save_results

    errors = []

    def write(n):
        for i in range(150):
            try:
                save_results(Results(advise_version="t", created=str(i), task={"name": f"w{n}"}, environment={},
                                     data={}, candidates=[]), tmp_path)
            except Exception as e:  # what the old code raised 4–51 times per 300 writes
                errors.append(repr(e))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert load_results(tmp_path).task["name"] in ("w0", "w1")
    assert not list(tmp_path.glob("*.tmp"))


def test_a_second_run_on_the_same_run_folder_is_refused(tmp_path):
    from advisor.tasks import load_task
    from foundation.errors import AdviseError
    from foundation.runinfo import run_dir_lock

    task = load_task(write_task(tmp_path / "t"))
    with run_dir_lock(task.run_dir, task_file="task.yaml"):
        with pytest.raises(AdviseError, match=r"task.yaml: output.dir: .* is in use by advise run \(pid \d+\)"):
            with run_dir_lock(task.run_dir, task_file="task.yaml"):
                pass
        with pytest.raises(AdviseError, match="is in use"):  # nor can a tune worker join a running `advise run`
            with run_dir_lock(task.run_dir, shared=True, task_file="task.yaml"):
                pass
    with run_dir_lock(task.run_dir, shared=True), run_dir_lock(task.run_dir, shared=True):
        pass  # tune workers of one sweep share the folder


def test_a_second_advise_run_process_is_refused_while_the_first_holds_the_folder(tmp_path):
    from advisor.tasks import load_task
    from foundation.runinfo import run_dir_lock

    path = write_task(tmp_path / "t")
    with run_dir_lock(load_task(path).run_dir):
        r = run("run", path, "--quiet", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "output.dir" in r.stderr and "is in use" in r.stderr


def test_report_renders_a_results_file_with_nan_and_infinity(tmp_path):
    """A measured run is never lost to its report: non-finite numbers render as '–' or '∞'."""
    from conftest_reports import make_results

    run_dir = tmp_path / "runs" / "r"
    results = make_results(run_dir)
    raw = json.loads((run_dir / "results.json").read_text())
    raw["candidates"][0]["quality"]["ci_low"] = float("nan")
    raw["candidates"][1]["cost_per_1k_usd"] = float("inf")
    (run_dir / "results.json").write_text(json.dumps(raw))
    r = run("report", run_dir)
    assert r.returncode == 0, r.stderr
    assert (run_dir / "report.html").exists() and "Traceback" not in r.stderr
    assert results.candidates[0].name in r.stdout


def test_infinite_costs_round_trip_through_results_json(tmp_path):
    """A candidate that answered nothing in time has an infinite cost per query: it must survive
    save and load (pydantic writes inf as null by default, which then fails to load)."""
    from conftest_reports import make_results
    from foundation.results import load_results, save_results

    results = make_results(tmp_path)
    results.candidates[0].cost_per_1k_usd = float("inf")
    save_results(results, tmp_path)
    assert math.isinf(load_results(tmp_path).candidates[0].cost_per_1k_usd)


def test_report_of_a_run_folder_with_brackets_in_its_name(tmp_path):
    from conftest_reports import make_results

    run_dir = tmp_path / "runs [old]" / "r[1]"
    make_results(run_dir)
    r = run("report", run_dir)
    assert r.returncode == 0, r.stderr
    assert f"report: {run_dir / 'report.html'}" in " ".join(r.stdout.split())


def test_quiet_run_prints_nothing_at_all(tmp_path):
    """--quiet: no progress, no tables, and no library warnings on stderr, so a late error would be
    the one line on stderr."""
    path = write_task(tmp_path / "t")
    r = subprocess.run([sys.executable, "-m", "commands.cli", "run", str(path), "--quiet", "--no-tune"],
                       capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    assert json.loads((tmp_path / "t" / "runs" / "tiny-task" / "results.json").read_text())["status"] == "complete"


@pytest.mark.skipif(not Path(ADVISE).exists(), reason="the advise console script is not installed in this venv")
def test_a_fresh_machine_still_gets_one_error_line_while_the_bundled_model_is_converted(tmp_path):
    """On a fresh machine the first command converts the bundled GGUF (transformers' own progress
    bars on stderr); a bad task's error must still be the only line."""
    import shutil

    from test_bad_input import CORPUS

    folder = tmp_path / "case"
    shutil.copytree(CORPUS / "max-seq-length-drops-every-record", folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ADVISE_CACHE": str(tmp_path / "empty-cache")}
    r = subprocess.run([ADVISE, "validate", "task.yaml"], capture_output=True, text=True, cwd=folder, env=env,
                       timeout=300)
    assert (tmp_path / "empty-cache/smollm2-135m-instruct/model.safetensors").exists()  # it did convert
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error: task.yaml: baselines.finetune.max_seq_length"), lines


def test_validate_warns_of_corpus_files_it_will_not_index_and_sources_keep_their_folders(tmp_path):
    path = write_task(tmp_path / "t")
    (tmp_path / "t/docs/brochure.pdf").write_bytes(b"%PDF-1.4 not text")
    (tmp_path / "t/docs/v2").mkdir()
    (tmp_path / "t/docs/v2/parts.md").write_text("Part 7 is now P-777.")
    (tmp_path / "t/docs/.DS_Store").write_bytes(b"\x00")
    r = run("validate", path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        f"warning: corpus: 1 file is not .md, .txt or .jsonl and not indexed ({tmp_path}/t/docs/brochure.pdf); "
        "convert them to text to use them"]
    from advisor.tasks import load_task
    from foundation.corpus import load_corpus

    assert sorted(d.source for d in load_corpus(load_task(path))) == ["intro.md", "parts.md", "v2/parts.md"]


def test_a_corpus_of_zero_width_characters_is_an_error_and_the_last_run_is_kept(tmp_path):
    """Text the embedder's tokenizer drops (U+200B, U+FEFF, soft hyphens) is no corpus: validate
    says so before a run rewrites results.json; an earlier run's file is kept as results.prev.json."""
    path = write_task(tmp_path / "t")
    run_dir = tmp_path / "t/runs/tiny-task"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text('{"earlier": "run"}')
    for doc in (tmp_path / "t/docs").iterdir():
        doc.write_text("\u200b\ufeff\u00ad\u2060 \n" * 20)
    for command in ("validate", "run"):
        r = run(command, path, "--quiet") if command == "run" else run(command, path)
        assert r.returncode == 2 and r.stderr.splitlines() == [
            f"error: {path}: corpus.paths: the corpus has no readable text (.md, .txt or .jsonl files)"], r.stderr
    assert (run_dir / "results.json").read_text() == '{"earlier": "run"}'


def test_a_new_run_keeps_the_previous_results_as_results_prev(tmp_path):
    from advisor.pipeline import keep_previous

    (tmp_path / "results.json").write_text('{"candidates": [{"a": 1}]}')
    keep_previous(tmp_path)
    assert (tmp_path / "results.prev.json").read_text() == '{"candidates": [{"a": 1}]}'


def test_model_folders_that_cannot_serve_are_one_line_errors_in_validate(tmp_path):
    """A base model's folder (no chat template), a config without a tokenizer, a config transformers
    rejects: each is the user's `model:` to fix, never an internal error."""
    from foundation.models import load_model, load_tokenizer, resolve_model

    source = resolve_model("tiny-random")
    model, tok = load_model(source, seed=0), load_tokenizer(source)
    base = tmp_path / "t/base"
    model.save_pretrained(base)
    tok.chat_template = None
    tok.save_pretrained(base)
    for template in base.glob("*.jinja"):
        template.unlink()
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "t/config-only").mkdir()
    (tmp_path / "t/config-only/config.json").write_text(json.dumps(model.config.to_dict()))
    (tmp_path / "t/bad-config").mkdir()
    (tmp_path / "t/bad-config/config.json").write_text(json.dumps({**model.config.to_dict(), "hidden_size": "abc"}))
    path = write_task(tmp_path / "t")
    text = path.read_text()
    for folder, message in (("base", "has no chat template"), ("config-only", "cannot load the model's tokenizer"),
                            ("bad-config", "cannot read the model's config")):
        path.write_text(text.replace("model: tiny-random", f"model: ./{folder}"))
        r = run("validate", path)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"error: {path}: model: ") and message in r.stderr, r.stderr


def test_validate_warns_when_references_are_longer_than_the_answers_the_model_may_write(tmp_path):
    """GSM8K-style references (reasoning, then `#### 42`) with the default 32 new tokens: every
    candidate would score 0 without a word."""
    evals = [{"question": f"Sum {i} and 3?", "answer": f"First take {i}. Then add three to it, step by step, "
              f"carefully, counting on the fingers of one hand and then the other.\n#### {i + 3}"} for i in range(6)]
    path = write_task(tmp_path / "t", eval_rows=evals)
    r = run("validate", path)
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("warning: 6 of 6 eval references are longer than generation.max_new_tokens (6 tokens")
