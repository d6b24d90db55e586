"""The `advise` command through its real entry point."""
import json
import os
import subprocess
import sys

import pytest

from conftest import learnable_in_a_few_steps, write_task

ADVISE = [sys.executable, "-m", "commands.cli"]


def advise(*args, cwd=None, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    return subprocess.run([*ADVISE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_help_is_instant_and_does_not_import_torch():
    code = ("import sys\nfrom commands.cli import main\nmain(['--help'])\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "NO-TORCH" in out.stdout and "run" in out.stdout


def test_init_validate_run_report_on_the_tiny_model(tmp_path):
    assert advise("init", tmp_path / "t").returncode == 0
    task = tmp_path / "t" / "task.yaml"
    task.write_text(task.read_text().replace("model: default", "model: tiny-random")
                    .replace("max_steps: 20", "max_steps: 2"))
    v = advise("validate", task)
    assert v.returncode == 0 and "ok" in v.stdout and "question_answer" in v.stdout
    r = advise("run", task, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    run_dir = tmp_path / "t" / "runs" / "t"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["schema_version"] == 3 and results["status"] == "complete"
    assert [c["name"] for c in results["candidates"]] == ["prompt-zero-shot", "prompt-few-shot", "rag", "finetune",
                                                        "finetune+rag"]
    assert results["verdict"]["recommendation"] in ("prompt", "rag", "finetune", "finetune_rag")
    assert set(results["timings"]) >= {"load_data", "load_model", "prompt", "rag", "finetune"}
    assert summary["verdict"]["recommendation"] == results["verdict"]["recommendation"]
    for c in results["candidates"]:
        assert len((run_dir / c["predictions_file"]).read_text().splitlines()) == c["quality"]["n"]
    assert (run_dir / "adapters/pilot/adapter_config.json").exists()
    assert (run_dir / "rag/index.faiss").exists() and (run_dir / "report.html").exists()
    # Re-rendering reads results.json only.
    (run_dir / "report.html").unlink()
    rep = advise("report", run_dir)
    assert rep.returncode == 0 and (run_dir / "report.html").exists()
    assert results["verdict"]["winner"] in rep.stdout


def test_interrupted_run_keeps_what_was_measured(tmp_path):
    """A run killed during fine-tuning keeps the baselines already measured in results.json."""
    path = write_task(tmp_path / "t", extra="")
    path.write_text(path.read_text().replace("max_steps: 3", "max_steps: 400").replace("finetune: {", "finetune: {time_budget_s: 600, epochs: 1000, "))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    import signal

    # A shell that runs us in the background starts children with SIGINT ignored; a user's
    # terminal does not, so restore the default before exec.
    proc = subprocess.Popen([*ADVISE, "run", str(path), "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = tmp_path / "t/runs/tiny-task/results.json"
    import time

    deadline = time.time() + 600
    while time.time() < deadline:
        if results.exists() and any(c["baseline"] == "rag" for c in json.loads(results.read_text())["candidates"]):
            break
        time.sleep(1)
    proc.send_signal(2)  # Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.splitlines() == [f"interrupted: what was measured is kept in {results}"], \
        (proc.returncode, err[-3000:])
    kept = json.loads(results.read_text())
    assert kept["status"] == "interrupted" and kept["verdict"] is None
    assert {c["name"] for c in kept["candidates"]} >= {"prompt-zero-shot", "rag"}


@pytest.mark.slow
def test_bundled_model_end_to_end_is_deterministic(tmp_path, monkeypatch):
    """The real bundled SmolLM2-135M-Instruct through `advise run`, twice: same verdict, same answers.
    FT + RAG is left out (its parts, retrieval and the pilot's training, are each candidates here) and
    one query is timed per candidate (latency is not compared): the two runs cost half as much.
    Both run on the thread count the machine leaves free now, pinned: float sums may differ in their
    last bits between counts (foundation.threads)."""
    from foundation.threads import threads_now

    threads = threads_now()
    monkeypatch.setenv("ADVISE_THREADS", str(threads))
    rows = [{"question": f"Which city is the capital of {c}?", "answer": a} for c, a in [
        ("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Japan", "Tokyo"),
        ("Egypt", "Cairo"), ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Russia", "Moscow")]]
    runs = []
    for n in (1, 2):
        folder = tmp_path / f"run{n}"
        path = write_task(folder, model="default", train=rows[:4] * 3, eval_rows=rows[4:])
        path.write_text(path.read_text().replace("max_new_tokens: 6", "max_new_tokens: 16")
                        .replace("latency_queries: 3", "latency_queries: 1")
                        .replace("finetune: {max_steps: 3", "finetune_rag: {enabled: false}\n  finetune: {max_steps: 3"))
        r = advise("run", path, "--quiet", "--no-tune")
        assert r.returncode == 0, r.stderr
        runs.append(json.loads((folder / "runs/tiny-task/results.json").read_text()))
    a, b = runs
    assert set(a["environment"]["torch_threads_by_stage"].values()) == {threads}
    assert a["verdict"]["winner"] == b["verdict"]["winner"]
    for ca, cb in zip(a["candidates"], b["candidates"]):
        assert ca["scores"] == cb["scores"], ca["name"]
    zero_shot = a["candidates"][0]
    assert zero_shot["quality"]["mean"] >= 0.5  # the real model knows capitals; a broken pipeline scores 0


def test_run_goes_on_into_the_study_when_finetuning_wins(tmp_path):
    """A constant-answer task: the random-init base model cannot produce it, a few LoRA steps can.
    Fine-tuning wins honestly, and `advise run` continues into the Optuna study."""
    train = [{"question": f"Ticket {i}: my order {i} is late", "answer": "ok"} for i in range(40)]
    evals = [{"question": f"Ticket {i}: where is parcel {i}?", "answer": "ok"} for i in range(100, 112)]
    path = write_task(tmp_path / "t", corpus=False, train=train, eval_rows=evals,
                      extra="tune: {n_trials: 2, max_steps: 8, eval_every: 4, methods: [lora], "
                            "search: {learning_rate: {low: 0.05, high: 0.1}}}")
    learnable_in_a_few_steps(path)
    r = advise("run", path, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "t/runs/tiny-task"
    results = json.loads((run_dir / "results.json").read_text())
    verdict, study = results["verdict"], results["study"]
    pilot = next(c for c in results["candidates"] if c["baseline"] == "finetune")["config"]
    assert verdict["finetune_wins"] and pilot["method"] == "lora"
    assert results["status"] == "complete" and study["status"] == "complete"
    first = study["trials"][0]
    assert first["params"]["learning_rate"] == pilot["params"]["learning_rate"]  # the pilot runs first
    assert len(study["trials"]) == 2 and study["best_trial"] is not None and study["best_eval"]["n"] == 12
    assert (run_dir / "study.db").exists() and (run_dir / "trials.csv").exists()
    assert (run_dir / "adapters/best/adapter_config.json").exists()
    html = (run_dir / "report.html").read_text()
    assert "Finding the cheapest good way to fine-tune" in html and "Optimisation history" in html
