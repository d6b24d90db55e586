"""Endpoints failing in real ways, against a fault-injecting OpenAI-compatible server on loopback
(the real ``openai`` client, real HTTP): Retry-After, 5xx retries, timeouts, 401/404/refused as
one-line errors naming the task key, bounded concurrency, the response cache, the judge's parsing
and retries. The candidate path against a real ``transformers serve`` is tests/test_compare_run.py."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from endpoint_servers import FaultServer, completion, error, free_port
from foundation.compare_config import CompareModel
from foundation.endpoints import Endpoint
from foundation.errors import AdviseError

KEY = "sk-test-PLANTED-0123456789abcdef"
HELLO = [{"role": "user", "content": "hello"}]
PARAMS = {"max_tokens": 4, "temperature": 0.0}


def endpoint(url, cache=None, **kw) -> Endpoint:
    cfg = CompareModel(name="api", model="m", base_url=url, api_key_env="ADVISE_TEST_KEY",
                       price_per_million_input=2.0, price_per_million_output=8.0, **{"max_retries": 2, **kw})
    return Endpoint(cfg, 0, cache, "task.yaml")


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("ADVISE_TEST_KEY", KEY)


def test_429_is_retried_after_the_servers_retry_after():
    script = lambda n, body: (429, {"Retry-After": "1"}, error(429, "slow down"), 0) if n == 0 else (
        200, {}, completion("fine"), 0)
    with FaultServer(script) as server:
        reply = endpoint(server.url).complete(HELLO, PARAMS)
    (t0, _, auth), (t1, _, _) = server.requests
    assert reply.text == "fine" and (reply.prompt_tokens, reply.completion_tokens) == (11, 3)
    assert t1 - t0 >= 0.95, "the retry came before the server's Retry-After"
    assert auth == f"Bearer {KEY}"


def test_5xx_is_retried_with_backoff_then_a_one_line_error_names_base_url():
    flaky = lambda n, body: (500, {}, error(500, "boom"), 0) if n < 2 else (200, {}, completion("ok"), 0)
    with FaultServer(flaky) as server:
        assert endpoint(server.url).complete(HELLO, PARAMS).text == "ok"
        assert len(server.requests) == 3
    broken = lambda n, body: (503, {}, error(503, "down"), 0)
    with FaultServer(broken) as server, pytest.raises(AdviseError) as e:
        endpoint(server.url, max_retries=1).complete(HELLO, PARAMS)
    assert e.value.where == "compare.0.base_url" and "HTTP 503 after 1 retries" in str(e.value)
    assert len(server.requests) == 2 and "\n" not in str(e.value)


def test_a_slow_answer_times_out_naming_the_timeout_key():
    slow = lambda n, body: (200, {}, completion("late"), 2.0)
    with FaultServer(slow) as server, pytest.raises(AdviseError) as e:
        endpoint(server.url, timeout=0.3, max_retries=0).complete(HELLO, PARAMS)
    assert e.value.where == "compare.0.timeout" and "within 0.3 s" in str(e.value)


@pytest.mark.parametrize("status,where", [(401, "api_key_env"), (403, "api_key_env"), (404, "model")])
def test_refusals_are_one_line_errors_naming_the_key_and_never_the_key(status, where):
    refuse = lambda n, body: (status, {}, error(status, f"Incorrect API key provided: {KEY}"), 0)
    with FaultServer(refuse) as server, pytest.raises(AdviseError) as e:
        endpoint(server.url).complete(HELLO, PARAMS)
    assert e.value.where == f"compare.0.{where}" and f"HTTP {status}" in str(e.value)
    assert KEY not in str(e.value) and len(server.requests) == 1  # not retried


def test_connection_refused_names_base_url():
    with pytest.raises(AdviseError) as e:
        endpoint(f"http://127.0.0.1:{free_port()}/v1", max_retries=0).complete(HELLO, PARAMS)
    assert e.value.where == "compare.0.base_url" and "cannot connect" in str(e.value)


def test_missing_key_is_an_error_before_any_request(monkeypatch):
    monkeypatch.delenv("ADVISE_TEST_KEY")
    with pytest.raises(AdviseError, match=r"ADVISE_TEST_KEY is not set") as e:
        endpoint("http://127.0.0.1:9/v1").complete(HELLO, PARAMS)
    assert e.value.where == "compare.0.api_key_env"


def test_concurrency_is_bounded_and_the_cache_resumes_without_paying_twice(tmp_path):
    echo = lambda n, body: (200, {}, completion(body["messages"][0]["content"].upper()), 0.15)
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
    cache = tmp_path / "answers.jsonl"
    with FaultServer(echo) as server:
        first, _ = endpoint(server.url, cache, concurrency=3).complete_all(conversations[:6], PARAMS)
        assert server.max_in_flight == 3
        # A new run (a new Endpoint on the same cache file) pays only for the six it has not seen.
        again, _ = endpoint(server.url, cache, concurrency=3).complete_all(conversations, PARAMS)
    assert len(server.requests) == 12
    assert [r.cached for r in again] == [True] * 6 + [False] * 6
    assert [r.text for r in again] == [f"Q{i}" for i in range(12)] and again[:6] == [
        type(r)(r.text, r.prompt_tokens, r.completion_tokens, r.seconds, True) for r in first]
    assert KEY not in cache.read_text()


def test_usage_is_priced_and_missing_prices_are_unpriced():
    ep = endpoint("http://127.0.0.1:9/v1")
    assert ep.cost(1_000_000, 500_000) == pytest.approx(2.0 + 4.0)
    unpriced = Endpoint(CompareModel(name="x", model="m", base_url="http://127.0.0.1:9/v1"), 0)
    assert unpriced.cost(100, 10) is None and ep.cost(None, 3) is None


def test_validate_online_makes_one_tiny_request_and_reports_a_refusal_in_one_line(tmp_path):
    from conftest import write_task

    refuse = lambda n, body: (401, {}, error(401, "bad key"), 0)
    ok = lambda n, body: (200, {}, completion("OK", 5, 1), 0)
    for script, code in ((ok, 0), (refuse, 2)):
        with FaultServer(script) as server:
            task = write_task(tmp_path / f"t{code}", extra=f"compare:\n  - {{name: api, model: m, base_url: "
                                                          f"'{server.url}', api_key_env: ADVISE_TEST_KEY}}\n")
            r = subprocess.run([sys.executable, "-m", "commands.cli", "validate", str(task), "--online"],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == code, r.stderr
            assert len(server.requests) == 1 and server.requests[0][1]["max_tokens"] == 1
    assert r.stderr.count("\n") == 1 and "compare.0.api_key_env" in r.stderr and "Traceback" not in r.stderr


def test_task_file_never_holds_a_key(tmp_path):
    from foundation.taskfile import load_task

    from conftest import write_task

    cases = {"api_key: sk-abc": "never write an API key", f"api_key_env: {KEY}": "NAME of an environment variable",
             "distill: all": "distillation reads from an endpoint"}
    for i, (entry, message) in enumerate(cases.items()):
        base = "" if "distill" in entry else ", base_url: 'http://127.0.0.1:9/v1'"
        task = write_task(tmp_path / str(i), extra=f"compare:\n  - {{name: a, model: m{base}, {entry}}}\n")
        with pytest.raises(AdviseError, match=message) as e:
            load_task(task)
        assert KEY not in str(e.value) and "sk-abc" not in str(e.value)
    task = write_task(tmp_path / "judge", extra="compare: []\n").read_text().replace(
        "metric: {name: contains}", "metric: {name: llm_judge, judge: nobody}")
    (tmp_path / "judge" / "task.yaml").write_text(task)
    with pytest.raises(AdviseError, match="metric.judge: 'nobody' is not a name in compare"):
        load_task(tmp_path / "judge" / "task.yaml")


def test_v2_results_load_with_the_model_that_answered(tmp_path):
    from foundation.results import SCHEMA_VERSION, load_results

    from conftest_reports import make_results

    raw = json.loads(make_results(tmp_path, study=False).model_dump_json())
    raw["schema_version"] = 2
    raw["task"]["model"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    for c in raw["candidates"]:
        c.pop("model", None)
    (tmp_path / "results.json").write_text(json.dumps(raw))
    loaded = load_results(tmp_path)
    assert loaded.schema_version == SCHEMA_VERSION == 3
    assert {c.model for c in loaded.candidates} == {"HuggingFaceTB/SmolLM2-135M-Instruct"}


def _grading(malformed_for: str):
    """A judge that answers "Score: 8/10" except for one prediction, which never gets a number."""
    def script(n, body):
        text = body["messages"][1]["content"]
        return 200, {}, completion("I cannot say." if malformed_for in text else "Score: 8/10", 40, 4), 0
    return script


def test_the_judge_grades_retries_malformed_grades_counts_them_and_caches(tmp_path):
    from foundation.judge import RETRIES, grade_records
    from foundation.records import Record

    records = [Record(input=f"q{i}", output=f"a{i}") for i in range(4)]
    predictions = ["a0", "a1", "UNGRADABLE", "a3"]
    with FaultServer(_grading("UNGRADABLE")) as server:
        task = SimpleNamespace(
            compare=[CompareModel(name="judge", model="m", base_url=server.url, api_key_env="ADVISE_TEST_KEY",
                                  price_per_million_input=1.0, price_per_million_output=10.0)],
            metric=SimpleNamespace(judge="judge", rubric=None), generation=SimpleNamespace(batch_size=4),
            run_dir=tmp_path, source_path=None)
        scores, report = grade_records(task, predictions, records)
        assert len(server.requests) == 4 + RETRIES
        again, report2 = grade_records(task, predictions, records)
        assert len(server.requests) == 4 + RETRIES, "cached grades were paid for again"
    judge = report["judge"]
    assert scores == again == [0.8, 0.8, 0.0, 0.8]
    assert (judge["malformed"], judge["malformed_examples"], judge["graded"]) == (1, [2], 4)
    assert judge["prompt_tokens"] == 40 * (4 + RETRIES) and judge["cost_usd"] == pytest.approx(
        (40 * 1.0 + 4 * 10.0) * (4 + RETRIES) / 1e6)
    assert report2["judge"]["cached"] == 4 and report2["judge"]["cost_usd"] == 0.0


def test_the_judge_is_a_registered_metric_that_needs_the_task():
    from foundation.config import MetricConfig
    from foundation.metrics import METRICS, score_records

    assert METRICS["llm_judge"].grade_records is not None
    with pytest.raises(ValueError, match="needs `judge`"):
        MetricConfig(name="llm_judge")
    with pytest.raises(ValueError, match="whole task"):
        score_records(MetricConfig(name="llm_judge", judge="j"), ["a"], [SimpleNamespace(output="a", alternatives=[])])


def test_the_verdict_compares_across_models_and_never_takes_unpriced_for_free():
    import math

    from test_verdict import cand, scores, task

    from decision.verdict import decide

    same = scores(0.6, seed=4)
    rag = cand("rag", "rag", same, per_1k=0.05)
    api = cand("rag@api", "rag", same, per_1k=math.nan)  # as good, no prices: unknown cost
    priced = cand("rag@cheap", "rag", same, per_1k=0.01)
    rag.model, api.model, priced.model = "default", "api", "cheap"
    v = decide([rag, api], task())
    assert v.winner == "rag" and any("rag@api is unpriced" in r for r in v.reasons)
    v = decide([api], task())
    assert v.winner == "rag@api" and any("rag@api is unpriced" in r for r in v.reasons)
    v = decide([rag, api, priced], task())
    across = [r for r in v.reasons if r.startswith("Across models:")]
    assert v.winner == "rag@cheap" and len(across) == 2 and any("rag costs $5.00/month" in r for r in across)
