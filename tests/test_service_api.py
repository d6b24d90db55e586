"""The service's API against a real ``advise serve`` (uvicorn on loopback, embedded: SQLite state,
huey's SQLite queue, a local worker pool of one): submit → run on the tiny model → verdict →
report and downloads; a bad task gets the CLI's own error line as HTTP 422; cancel; re-run.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

from conftest import write_task
from conftest_service import ADVISE, env, run_state, serve, sse, submit_zip, wait_for, wait_status

pytestmark = pytest.mark.service
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("service") / "data") as url:
        yield url


def _files(folder: Path) -> list:
    """Loose files with their relative paths as names, as the page's folder picker sends them."""
    return [("files", (p.relative_to(folder).as_posix(), p.read_bytes())) for p in sorted(folder.rglob("*"))
            if p.is_file()]


def test_submit_run_verdict_report_and_downloads(server, tmp_path):
    """`advise submit --wait` (the task folder zipped, over the API) → run on the tiny model →
    verdict → report and downloads, and the same run through the JSON API and the pages."""
    task = write_task(tmp_path / "task")
    proc = subprocess.run([*ADVISE, "submit", str(task), "--server", server, "--wait", "--no-tune", "--json"],
                          env={**env(), "USER": XSS}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert f"submitted run {run['id']}: {server}/runs/{run['id']}" in proc.stderr
    assert "Evaluating prompt-zero-shot" in proc.stderr and "Pilot fine-tune (LoRA)" in proc.stderr  # stages
    assert f"verdict: {run['headline']}" in proc.stderr and f"report: {server}/api/runs/{run['id']}/report" in proc.stderr

    done = run_state(server, run["id"])
    assert done["status"] == "complete" and done["name"] == "tiny-task" and done["submitter"] == XSS
    assert not done["tune"] and done["started_at"] >= done["created_at"]
    results = requests.get(f"{server}/api/runs/{run['id']}/results", timeout=10).json()
    assert results["status"] == "complete"
    assert done["headline"] == results["verdict"]["headline"] and done["winner"] == results["verdict"]["winner"]
    winner = next(c for c in results["candidates"] if c["name"] == done["winner"])
    assert done["best_quality"] == pytest.approx(winner["quality"]["mean"])
    assert done["monthly_cost"] > 0 and done["cost_text"].startswith("$")
    assert [j["status"] for j in done["jobs"]] == ["complete"]

    report = requests.get(f"{server}/api/runs/{run['id']}/report", timeout=10)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "sandbox" in report.headers["content-security-policy"]
    assert "<title>advise: tiny-task</title>" in report.text
    paths = {f["path"] for f in done["files"]}
    assert {"results.json", "report.html", "predictions/rag.jsonl", "adapters/pilot/adapter_config.json"} <= paths
    pred = requests.get(f"{server}/api/runs/{run['id']}/files/predictions/rag.jsonl", timeout=10)
    assert pred.status_code == 200 and "attachment" in pred.headers["content-disposition"]
    assert len(pred.text.splitlines()) == 8 and "prediction" in json.loads(pred.text.splitlines()[0])
    adapter = requests.get(f"{server}/api/runs/{run['id']}/adapters/pilot.zip", timeout=10)
    assert adapter.status_code == 200 and b"pilot/adapter_config.json" in adapter.content

    events = sse(f"{server}/api/runs/{run['id']}/events")
    started = [d["description"] for e, d in events if e == "task"]
    assert started[0] == "Loading model tiny-random"
    assert {"Evaluating prompt-zero-shot", "Embedding for RAG", "Pilot fine-tune (LoRA)"} <= set(started)
    assert any(e == "advance" for e, _ in events) and events[-1] == ("end", {"status": "complete"})

    listed = requests.get(server + "/api/runs", timeout=10).json()
    assert run["id"] in [x["id"] for x in listed]
    for page in ("/", f"/runs/{run['id']}"):  # what a submitter typed is shown as text
        html = requests.get(server + page, timeout=10).text
        assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_loose_files_with_folders_in_their_names(server, tmp_path):
    """The API takes task.yaml and its data as separate files named with their relative paths
    (what the page's folder picker sends); the run is queued once they pass the checks."""
    folder = write_task(tmp_path / "task").parent
    r = requests.post(server + "/api/runs", files=_files(folder), data={"tune": "false", "workers": "1"},
                      headers={"Origin": server}, timeout=60)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "queued" and r.headers["location"] == f"/api/runs/{run['id']}"
    assert requests.post(f"{server}/api/runs/{run['id']}/cancel", timeout=10).status_code == 200
    wait_status(server, run["id"], ("cancelled",), 60)


def test_a_bad_task_is_refused_with_the_cli_error_line(server, tmp_path):
    folder = write_task(tmp_path / "bad").parent
    (folder / "task.yaml").write_text((folder / "task.yaml").read_text().replace("top_k: 2", "topk: 2"))
    cli = subprocess.run([*ADVISE, "validate", "task.yaml"], cwd=folder, env=env(), capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 2
    r = submit_zip(server, folder)
    assert r.status_code == 422
    assert r.json()["detail"] == cli.stderr.strip().removeprefix("error: ")
    assert r.json()["detail"] == "task.yaml: baselines.rag.topk: unknown key 'topk'"


def _job_processes(run_id: int) -> list:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "service.job" in cmd and any("/jobs/" in c for c in cmd):
            found.append(p)
    return found


def test_cancel_a_queued_and_a_running_run(server, tmp_path):
    long = write_task(tmp_path / "long", extra="").parent
    task = long / "task.yaml"
    text = task.read_text().replace("finetune: {max_steps: 3,", "finetune: {max_steps: 4000, epochs: 1000,")
    task.write_text(text.replace("prompt: {few_shot_k: 2}", "prompt: {few_shot_k: 0}"))
    running = submit_zip(server, long, tune=False).json()
    queued = submit_zip(server, long, tune=False).json()

    r = requests.post(f"{server}/api/runs/{queued['id']}/cancel", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    wait_for(lambda: "Pilot fine-tune" in run_state(server, running["id"])["stage"], 180, "the pilot fine-tune")
    assert _job_processes(running["id"]), "the job runs in a process of its own"
    t0 = time.monotonic()
    r = requests.post(f"{server}/api/runs/{running['id']}/cancel", timeout=10)
    assert r.status_code == 200 and r.json()["cancel_requested"]
    done = wait_status(server, running["id"], ("cancelled", "failed", "complete"), 60)
    assert done["status"] == "cancelled" and time.monotonic() - t0 < 45
    assert [j["status"] for j in done["jobs"]] == ["cancelled"]
    kept = requests.get(f"{server}/api/runs/{running['id']}/results", timeout=10).json()
    assert {"prompt-zero-shot", "rag"} <= {c["name"] for c in kept["candidates"]}, "what was measured is kept"
    assert "finetune" not in {c["name"] for c in kept["candidates"]}
    assert kept["status"] == "interrupted"
    wait_for(lambda: not _job_processes(running["id"]), 20, "the job's process to end")
    q = run_state(server, queued["id"])
    assert q["status"] == "cancelled" and q["started_at"] is None and [j["status"] for j in q["jobs"]] == ["cancelled"]
    assert requests.post(f"{server}/api/runs/{queued['id']}/cancel", timeout=10).status_code == 409
    assert requests.post(f"{server}/api/runs/999999/cancel", timeout=10).status_code == 404


CORPUS = Path(__file__).resolve().parent / "bad_inputs"
# Cases the service answers with its own rule (a task that leaves its upload folder) or never sees
# the way the CLI does (no task.yaml at all): the service's line still names the file and the key.
# Where the service's own rules refuse a task before the CLI's checks would: paths outside the
# upload, and a study storage of the task's own (the service keeps each run's study itself).
OUTSIDE = "must be a path inside the uploaded task folder (no absolute path, no '..' leaving it)"
OWN_STORAGE = "task.yaml: tune.storage: the service keeps every run's study in its own storage; remove tune.storage"
SERVICE_RULES = {"task-file-missing": "no task.yaml in the upload", "task-file-is-folder": "no task.yaml in the upload",
                 "corpus-path-is-root": f"task.yaml: corpus.paths.0: {OUTSIDE}",
                 "data-train-proc-file": f"task.yaml: data.train: {OUTSIDE}",
                 "storage-in-memory": OWN_STORAGE, "storage-unknown-scheme": OWN_STORAGE,
                 "storage-sqlite-folder-missing": OWN_STORAGE, "storage-sqlite-is-the-data": OWN_STORAGE,
                 "tune-storage-relative-to-task-file": OWN_STORAGE}


def _cli_line(folder: Path, monkeypatch, capsys) -> str:
    from commands.cli import main

    monkeypatch.chdir(folder)
    code = main(["validate", "task.yaml"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: "), err
    return err.removeprefix("error: ")


def test_the_bad_input_corpus_gets_the_cli_error_lines(server, tmp_path, monkeypatch, capsys):
    """Every validate case of tests/bad_inputs/, uploaded as a zip: HTTP 422 with the exact line
    `advise validate task.yaml` prints in that folder; where the CLI shows an absolute path inside
    the task folder, the service shows it relative to the folder (no server paths in answers)."""
    import shutil

    import yaml

    from service.uploads import relative_text

    cases = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))
    before = len(requests.get(server + "/api/runs", timeout=10).json())
    checked, wrong = 0, []
    for name, case in sorted(cases.items()):
        if case.get("command", "validate") != "validate" or case.get("arg", "task.yaml") != "task.yaml" \
                or case.get("chmod") or case.get("xfail") \
                or any(f.startswith("runs/") for f in case.get("files") or {}):
            continue  # (an upload never carries a run folder: the service gives each run a new one)
        folder = tmp_path / name
        shutil.copytree(CORPUS / name, folder)
        r = submit_zip(server, folder)
        assert r.status_code == 422, (name, r.status_code, r.text)
        detail = r.json()["detail"]
        expected = SERVICE_RULES.get(name) or relative_text(_cli_line(folder, monkeypatch, capsys), folder)
        if expected not in detail or str(tmp_path) in detail or "/uploads/" in detail:
            wrong.append(f"{name}: service {detail!r}, CLI {expected!r}")
        checked += 1
    assert wrong == [], "\n".join(wrong)
    assert checked >= 70
    assert len(requests.get(server + "/api/runs", timeout=10).json()) == before, "nothing was queued"


SWEEP = """\
tune:
  methods: [lora]
  n_trials: 2
  max_steps: 150                 # long enough (seconds) that the cancel always lands inside the second trial
  eval_every: 150
  pruner: none
  max_seq_length: 48
  latency_queries: 1
  search:
    batch_size: {choices: [4]}
    epochs: {choices: [1000.0]}
"""


def test_a_cancelled_sweep_is_continued_by_re_run(server, tmp_path):
    """Re-run of an unfinished run continues its study: finished trials are kept, the interrupted
    one runs again, and the study ends at tune.n_trials with no trial run twice."""
    folder = write_task(tmp_path / "sweep", corpus=False, extra=SWEEP).parent
    first = submit_zip(server, folder, mode="tune").json()

    def training_the_second_trial():
        events = requests.get(f"{server}/api/runs/{first['id']}/progress", timeout=10).json()
        bars = [e["data"]["id"] for e in events if e["kind"] == "task" and e["data"]["description"].startswith("Trial ")]
        return len(bars) >= 2 and any(e["kind"] == "advance" and e["data"]["id"] == bars[1] for e in events)
    wait_for(training_the_second_trial, 180, "the sweep's second trial to be training")
    requests.post(f"{server}/api/runs/{first['id']}/cancel", timeout=10)
    cancelled = wait_status(server, first["id"], ("cancelled", "complete", "failed"), 60)
    assert cancelled["status"] == "cancelled"

    r = requests.post(f"{server}/api/runs/{first['id']}/rerun", timeout=10)
    assert r.status_code == 201
    second = r.json()
    assert second["resumes"] == first["id"] and second["study_name"] == first["study_name"]
    done = wait_status(server, second["id"], ("complete", "failed", "cancelled"), 240)
    assert done["status"] == "complete", done

    trials = requests.get(f"{server}/api/runs/{second['id']}/trials", timeout=10).json()  # live, from Optuna
    states = [t["state"] for t in trials]
    assert sorted(t["number"] for t in trials) == list(range(len(trials)))
    assert states.count("complete") + states.count("pruned") == 2, states
    interrupted = [t for t in trials if t["state"] == "failed"]
    assert len(interrupted) == 1, states
    again = [t for t in trials if t["retry_of"] == interrupted[0]["number"]]
    assert len(again) == 1 and again[0]["params"] == interrupted[0]["params"], "the interrupted trial ran again, once"
    results = requests.get(f"{server}/api/runs/{second['id']}/results", timeout=10).json()
    assert len(results["study"]["trials"]) == len(trials)
