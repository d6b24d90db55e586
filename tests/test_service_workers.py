"""Scale-out: ``advise serve --db postgresql://… --queue redis://… --workers 0`` and two ``advise worker``
processes on the real PostgreSQL and Redis share one sweep; one worker is killed with SIGKILL in
the middle of a trial. Its job is failed once its heartbeat lapses, its trial is failed by Optuna's
heartbeat and run again by the other worker, the study reaches its trials, and the run completes:
no trial lost, none run twice.

Each run gets its own PostgreSQL schema and Redis queue name (both removed afterwards). Skipped
when PostgreSQL (``ADVISE_TEST_POSTGRES``) or Redis (``ADVISE_TEST_REDIS``) cannot be reached.
"""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import time
import uuid
from collections import Counter
from urllib.parse import quote

import optuna
import psutil
import pytest
import requests

from conftest import write_task
from conftest_service import free_port, run_state, serve, submit_zip, wait_for, wait_status, worker
from tuner.storage import driver_url

pytestmark = [pytest.mark.service, pytest.mark.postgres, pytest.mark.redis]
POSTGRES = os.environ.get("ADVISE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("ADVISE_TEST_REDIS", "redis://127.0.0.1:6379/0")
N_TRIALS = 5
TUNE = f"""\
tune:
  methods: [lora, ia3]
  n_trials: {N_TRIALS}
  max_steps: 4
  eval_every: 2
  pruner: none
  max_seq_length: 48
  latency_queries: 1
  heartbeat_s: 2
  max_retry: 2
  search:
    batch_size: {{choices: [4]}}
    epochs: {{choices: [1.0]}}
"""


@pytest.fixture
def schema_url():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        conn = psycopg2.connect(POSTGRES, connect_timeout=3)
    except psycopg2.OperationalError as e:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES}: {str(e).strip().splitlines()[0]}")
    conn.autocommit = True
    schema = f"advise_svc_{uuid.uuid4().hex[:12]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in POSTGRES else "?"
    try:
        yield f"{POSTGRES}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture
def queue_url():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as e:
        pytest.skip(f"Redis is not reachable at {REDIS}: {e}")
    name = f"advise_test_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{REDIS}?queue={name}"
    finally:
        for key in client.scan_iter(match=f"huey.*{name}*"):
            client.delete(key)
        client.close()


def _job_children(data_dir) -> list:
    return [p for p in psutil.process_iter(["cmdline"])
            if "service.job" in (p.info["cmdline"] or []) and any(str(data_dir) in c for c in p.info["cmdline"])]


def _in_second_trial(url: str, run_id: int, job_id: int) -> bool:
    """The job has trained one trial and is training the next (its progress bars say so)."""
    events = requests.get(f"{url}/api/runs/{run_id}/progress", timeout=10).json()
    open_bars, finished = {}, 0
    for e in events:
        if e["job_id"] != job_id:
            continue
        if e["kind"] == "task":
            open_bars[e["data"]["id"]] = e["data"]["description"]
        elif e["kind"] == "done":
            finished += open_bars.pop(e["data"]["id"], "").startswith("Trial ")
    return finished >= 1 and any(d.startswith("Trial ") for d in open_bars.values())


def test_two_workers_share_a_sweep_and_recover_from_a_kill(tmp_path, schema_url, queue_url):
    folder = write_task(tmp_path / "task", extra=TUNE).parent
    team = ("--db", schema_url, "--queue", queue_url)
    dashboard = ("--dashboard-port", str(free_port())) if importlib.util.find_spec("optuna_dashboard") else ()
    with serve(tmp_path / "server", *team, "--workers", "0", *dashboard) as url, \
            worker(tmp_path / "a", *team) as a, worker(tmp_path / "b", *team) as b:
        r = submit_zip(url, folder, mode="tune", workers=2)
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]

        def both_running():
            jobs = run_state(url, run_id)["jobs"]
            return len(jobs) == 2 and all(j["status"] == "running" for j in jobs) and jobs
        jobs = wait_for(both_running, 120, "both workers to take a job of the sweep")
        by_pid = {int(j["worker"].rsplit(":", 1)[1]): j["id"] for j in jobs}
        assert set(by_pid) == {a.pid, b.pid}, "each worker took one job"
        wait_for(lambda: _in_second_trial(url, run_id, by_pid[a.pid]), 240, "worker A to be in its second trial")
        assert _job_children(tmp_path / "a")
        os.kill(a.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: not _job_children(tmp_path / "a"), 15, "worker A's job process to die with it")

        done = wait_status(url, run_id, ("complete", "failed", "cancelled"), 420)
        assert done["status"] == "complete", done
        jobs = {j["id"]: j for j in done["jobs"]}
        dead = jobs[by_pid[a.pid]]
        assert dead["status"] == "failed" and "stopped sending heartbeats" in dead["error"]
        assert dead["finished_at"] - dead["heartbeat_at"] < 10, "failed within a few heartbeats"
        assert jobs[by_pid[b.pid]]["status"] == "complete"
        final = [j for j in jobs.values() if j["role"] == "finalize"]
        assert len(final) == 1 and final[0]["status"] == "complete" and final[0]["worker"].endswith(f":{b.pid}")
        assert time.monotonic() - killed_at < 400

        study = optuna.load_study(study_name=done["study_name"], storage=driver_url(schema_url))
        trials = study.get_trials()
        numbers = [t.number for t in trials]
        assert sorted(numbers) == list(range(len(trials))), "numbers unique and without gaps"
        assert len({t._trial_id for t in trials}) == len(trials)
        states = Counter(t.state.name for t in trials)
        assert states["COMPLETE"] + states["PRUNED"] >= N_TRIALS
        assert states["FAIL"] == 1 and states["RUNNING"] == 0, states
        failed = next(t for t in trials if t.state.name == "FAIL")
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == failed.number]
        assert len(retries) == 1, "the killed trial was run again, once"
        assert retries[0].params == failed.params and retries[0].state.name in ("COMPLETE", "PRUNED")
        assert retries[0].user_attrs["worker"] != failed.user_attrs["worker"], "by the other worker"
        workers = Counter(t.user_attrs.get("worker") for t in trials if t.state.name != "FAIL")
        assert len(workers) == 2, f"both workers ran trials: {workers}"

        results = requests.get(f"{url}/api/runs/{run_id}/results", timeout=10).json()
        assert sorted(t["number"] for t in results["study"]["trials"]) == sorted(numbers), "finalize saw them all"
        assert requests.get(f"{url}/api/runs/{run_id}/report", timeout=10).status_code == 200
        live = requests.get(f"{url}/api/runs/{run_id}/trials", timeout=10).json()
        assert len(live) == len(trials)
        sweep = requests.get(f"{url}/runs/{run_id}/sweep", timeout=10)
        assert sweep.status_code == 200 and "Pareto front" in sweep.text
        if dashboard:  # optuna-dashboard on the same PostgreSQL storage, linked from the sweep page
            link = re.search(r'href="(http://127\.0\.0\.1:\d+/dashboard/studies/\d+)"', sweep.text).group(1)
            assert requests.get(link, timeout=10).status_code == 200
            api = link.replace("/dashboard/studies/", "/api/studies/")
            assert len(wait_for(lambda: requests.get(api, timeout=10).json().get("trials"), 30, "the dashboard")) == \
                len(trials)
