"""``compare:`` end to end against a REAL OpenAI-compatible server: ``transformers serve`` on
loopback serving the tiny test model, through the real ``openai`` client (no mock of either).
Distillation needs a teacher that writes answers (the random tiny model writes only
whitespace): there the teacher is the fault-injecting test server, answering like a model would.

One run of ``advise run`` measures the task's own candidates and the endpoint's, prices the
tokens the server reported, and writes no file that holds the API key."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import learnable_in_a_few_steps, write_task
from endpoint_servers import FaultServer, TransformersServe, completion, save_tiny_model

KEY = "sk-live-PLANTED-c0ffee0123456789"
PRICE_IN, PRICE_OUT = 0.4, 1.6


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = save_tiny_model(tmp_path_factory.mktemp("tiny-model"))
    serve = TransformersServe(folder, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield serve.wait()
    finally:
        serve.stop()


def compare_task(folder, server, extra: str = ""):
    task = write_task(folder, extra=f"""
compare:
  - name: srv
    model: {server.folder}
    base_url: {server.url}
    api_key_env: ADVISE_TEST_KEY
    price_per_million_input: {PRICE_IN}
    price_per_million_output: {PRICE_OUT}
    concurrency: 3
{extra}""")
    text = task.read_text().replace("finetune: {max_steps: 3", "finetune: {enabled: false, max_steps: 3")
    task.write_text(text.replace("latency_queries: 3", "latency_queries: 2"))
    return task


def test_endpoint_candidates_are_paired_priced_as_billed_and_keep_the_key_out(tmp_path, server):
    task = compare_task(tmp_path / "t", server)
    env = {**os.environ, "ADVISE_TEST_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "commands.cli", "run", str(task), "--no-tune"], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = tmp_path / "t" / "runs" / "tiny-task"
    results = json.loads((run_dir / "results.json").read_text())
    by_name = {c["name"]: c for c in results["candidates"]}
    assert {"prompt-zero-shot@srv", "prompt-few-shot@srv", "rag@srv"} <= set(by_name)
    n = len(by_name["rag"]["scores"])
    for name in ("prompt-zero-shot@srv", "prompt-few-shot@srv", "rag@srv"):
        c = by_name[name]
        usage = c["details"]["usage"]
        assert c["model"] == "srv" and len(c["scores"]) == n  # paired: the same eval examples
        assert usage["reported"] == usage["requests"] == n and usage["prompt_tokens"] > 0
        billed = (usage["prompt_tokens"] * PRICE_IN + usage["completion_tokens"] * PRICE_OUT) / 1e6
        assert c["cost_per_1k_usd"] == pytest.approx(billed / n * 1000)
        assert c["latency"]["n"] == 2 and c["latency"]["p95_ms"] >= c["latency"]["p50_ms"] > 0
        assert c["throughput_qps"] > 0 and c["details"]["throughput_source"] == "measured"
    # RAG on the endpoint got the same retrieved context as RAG on the task's model: longer prompts.
    assert by_name["rag@srv"]["tokens"]["prompt_mean"] > by_name["prompt-zero-shot@srv"]["tokens"]["prompt_mean"]
    assert by_name["rag"]["model"] == "tiny-random"
    verdict = results["verdict"]
    assert {c["candidate"] for c in verdict["comparisons"]} == set(by_name)
    assert any(line.startswith("Across models:") for line in verdict["reasons"])
    assert "rag@srv" in (run_dir / "report.html").read_text() and "rag@srv" in r.stdout
    # The planted key is nowhere the run wrote: results, predictions, caches, report, terminal.
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "srv.answers.jsonl" for p in written)
    for p in written:
        assert KEY.encode() not in p.read_bytes(), p
    assert KEY not in r.stdout + r.stderr


def test_the_judge_grades_with_the_real_server_and_reports_what_it_could_not_read(tmp_path, server, monkeypatch):
    from foundation.compare_config import CompareModel
    from foundation.judge import grade_records
    from foundation.records import Record

    monkeypatch.setenv("ADVISE_TEST_KEY", KEY)
    task = SimpleNamespace(
        compare=[CompareModel(name="srv", model=str(server.folder), base_url=server.url, api_key_env="ADVISE_TEST_KEY",
                              price_per_million_input=PRICE_IN, price_per_million_output=PRICE_OUT)],
        metric=SimpleNamespace(judge="srv", rubric="10 if the answer names the part code, else 0."),
        generation=SimpleNamespace(batch_size=4), run_dir=tmp_path, source_path=None)
    records = [Record(input=f"Which code does part {i} carry?", output=f"P-{i:03d}") for i in range(3)]
    scores, report = grade_records(task, ["P-000", "no idea", "P-002"], records)
    judge = report["judge"]
    # Whatever a 135M judge writes: a readable grade in [0, 1], or one counted as malformed (scored 0).
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores) and judge["graded"] == 3
    assert judge["malformed"] == len(judge["malformed_examples"]) <= sum(s == 0.0 for s in scores)
    assert judge["prompt_tokens"] > 0 and judge["cost_usd"] > 0 and judge["rubric"] == "task"


def _teacher(n, body):
    """Answers "What is the code of part 7?" with "P-007", as a good teacher model would."""
    import re

    m = re.search(r"part (\d+)", body["messages"][-1]["content"])
    return 200, {}, completion(f"P-{int(m.group(1)):03d}" if m else "", 21, 4), 0


def test_distillation_trains_a_pilot_on_the_endpoints_answers_and_prices_them(tmp_path, monkeypatch):
    from advisor.pipeline import run_task

    monkeypatch.setenv("ADVISE_TEST_KEY", KEY)
    with FaultServer(_teacher) as teacher:
        task = write_task(tmp_path / "d", extra=f"""
compare:
  - {{name: teacher, model: t, base_url: '{teacher.url}', api_key_env: ADVISE_TEST_KEY, distill: all,
     price_per_million_input: {PRICE_IN}, price_per_million_output: {PRICE_OUT}}}
""")
        task.write_text(task.read_text().replace("finetune: {max_steps: 3", "finetune_rag: {enabled: false}\n  finetune: {max_steps: 3"))
        results = run_task(task, tune=False)
        sent = len(teacher.requests)
        again = run_task(task, tune=False)  # a re-run reads every answer from the run folder's cache
        assert len(teacher.requests) == sent, "a re-run paid for answers it already had"
    by_name = {c.name: c for c in results.candidates}
    distilled, plain = by_name["finetune-distilled@teacher"], by_name["finetune"]
    report = distilled.details["distillation"]
    rows = [json.loads(line) for line in (task.parent / "runs/tiny-task" / report["answers_file"]).read_text().splitlines()]
    assert distilled.baseline == "distill" and distilled.config is not None and plain.config is not None
    assert len(rows) == report["answers"] == results.data["sizes"]["train"] and all(r["output"] for r in rows)
    assert all(r["output"] == r["reference"] for r in rows)  # this teacher writes the reference answers
    assert report["cost_usd"] == pytest.approx(len(rows) * (21 * PRICE_IN + 4 * PRICE_OUT) / 1e6)
    assert distilled.one_off_cost_usd >= report["cost_usd"] > 0
    assert again.candidate("finetune-distilled@teacher").details["distillation"]["from_cache"] == len(rows)


def _sure_teacher(n, body):
    """Knows the one answer the eval split wants ("ok") for the training inputs, and answers the
    eval inputs wrongly itself: only a model trained on its answers scores."""
    late = "is late" in body["messages"][-1]["content"]
    return 200, {}, completion("ok" if late else "no", 15, 1), 0


def test_a_distilled_winner_is_tuned_on_the_teachers_answers_by_advise_tune(tmp_path, monkeypatch):
    """The references of the training inputs are wrong ("no"), the teacher's answers right ("ok"):
    the plain pilot learns "no", the distilled one "ok" and wins. `advise tune` afterwards (a new
    process in real use) reads the teacher's answers back from the run folder and tunes on them."""
    from advisor.pipeline import run_task, tune_task
    from advisor.tasks import load_task
    from tests.test_tuner_study import QUICK

    monkeypatch.setenv("ADVISE_TEST_KEY", KEY)
    train = [{"question": f"Ticket {i}: my order {i} is late", "answer": "no"} for i in range(40)]
    evals = [{"question": f"Ticket {i}: where is parcel {i}?", "answer": "ok"} for i in range(100, 112)]
    with FaultServer(_sure_teacher) as teacher:
        path = write_task(tmp_path / "d", corpus=False, train=train, eval_rows=evals, extra=f"""
compare:
  - {{name: teacher, model: t, base_url: '{teacher.url}', api_key_env: ADVISE_TEST_KEY, distill: all,
     price_per_million_input: {PRICE_IN}, price_per_million_output: {PRICE_OUT}}}
tune:
{QUICK}""")
        learnable_in_a_few_steps(path)
        results = run_task(path, tune=False)
        verdict = results.verdict
        by_name = {c.name: c.quality.mean for c in results.candidates}
        assert verdict.winner == "finetune-distilled@teacher", (verdict.headline, by_name)
        assert by_name["finetune"] < 0.5 < by_name["finetune-distilled@teacher"]
        sent = len(teacher.requests)
        tuned = tune_task(load_task(path))
        assert len(teacher.requests) == sent  # the answers come from the run folder, not the teacher again
    n_train = results.data["sizes"]["train"]
    assert f"trained on {n_train} answers written by teacher" in " ".join(tuned.study.notes)
    assert tuned.study.trials and tuned.study.trials[0].params.get("rank") == 16  # the winner's pilot first
    # Without the answers file the study cannot tune what won: one clear error, nothing trained.
    (tmp_path / "d/runs/tiny-task/distill/teacher.jsonl").unlink()
    from foundation.errors import AdviseError

    with pytest.raises(AdviseError, match="teacher.jsonl.*run `advise run` again"):
        tune_task(load_task(path), fresh=True)


def test_distill_missing_answers_only_the_training_inputs_without_an_output(tmp_path, monkeypatch):
    """distill: missing: 12 training questions have answers, 8 have none (a missing field, an empty
    one, a conversation-less blank): the teacher is asked those 8 alone, and the distilled pilot
    trains on the 12 own outputs (less validation) and the 8 answers. Without distill: missing the
    same file is refused at the line of the first record without an answer."""
    from advisor.pipeline import run_task
    from advisor.tasks import load_task
    from foundation.data import load_splits
    from foundation.errors import AdviseError

    monkeypatch.setenv("ADVISE_TEST_KEY", KEY)
    labeled = [{"question": f"What is the code of part {i}?", "answer": f"P-{i:03d}"} for i in range(12)]
    missing = ([{"question": f"What is the code of part {i}?"} for i in range(50, 54)]
               + [{"question": f"What is the code of part {i}?", "answer": "  "} for i in range(54, 58)])
    with FaultServer(_teacher) as teacher:
        path = write_task(tmp_path / "m", corpus=False, train=labeled[:6] + missing + labeled[6:], extra=f"""
compare:
  - {{name: teacher, model: t, base_url: '{teacher.url}', api_key_env: ADVISE_TEST_KEY, distill: missing,
     price_per_million_input: {PRICE_IN}, price_per_million_output: {PRICE_OUT}}}
""")
        path.write_text(path.read_text().replace("finetune: {max_steps: 3", "finetune_rag: {enabled: false}\n  finetune: {max_steps: 3"))
        splits = load_splits(load_task(path))
        assert len(splits.unlabeled) == 8 and all(not r.output for r in splits.unlabeled)
        assert all(r.output for r in splits.train + splits.validation)  # eval, validation and the pilot: outputs only
        results = run_task(path, tune=False)
        asked = [body["messages"][-1]["content"] for _, body, _ in teacher.requests
                 if body["messages"][0]["content"] != "You are a strict, fair grader."]
    distilled = results.candidate("finetune-distilled@teacher")
    report = distilled.details["distillation"]
    rows = [json.loads(line) for line in (tmp_path / "m/runs/tiny-task" / report["answers_file"]).read_text().splitlines()]
    assert report["inputs"] == "missing" and report["answers"] == 8 == len(rows)
    assert sorted(r["output"] for r in rows) == [f"P-{i:03d}" for i in range(50, 58)]
    assert sum(any(f"part {i}?" in text for text in asked) for i in range(50, 58)) == 8
    assert report["own_outputs"] == len(splits.train) and results.data["sizes"]["unlabeled"] == 8
    assert f"on {len(splits.train) + 8} records, 8 of them answered by teacher" in distilled.description

    path.write_text(path.read_text().replace("distill: missing", "distill: all"))
    with pytest.raises(AdviseError) as e:
        load_splits(load_task(path))
    assert e.value.file.endswith("train.jsonl") and e.value.where == 7 and "distill: missing" in e.value.message
