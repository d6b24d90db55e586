"""The rules of a run's life: start, cancel, re-run, settle when its jobs are done, and fail jobs
whose heartbeat lapsed (the reaper, run by the server and by every worker).

A run has one ``main`` job (``advise run`` or ``advise tune``), ``join`` jobs when more workers
share its study, and a ``finalize`` job that rebuilds results.json from the study once every
worker is done. A run is settled by whoever ends its last job, so nothing waits on anything.
"""
from __future__ import annotations

import time

from service.store import ACTIVE, TERMINAL, Store

LAPSE_BEATS = 3  # missed heartbeats before a running job is failed


def enqueue(store: Store, queue, run_id: int, role: str) -> int:
    job_id = store.create_job(run_id, role)
    store.update_job(job_id, queue_id=queue.enqueue(job_id))
    store.add_event(run_id, job_id, "job", {"job": job_id, "role": role, "status": "queued"})
    return job_id


def start_run(store: Store, queue, run_id: int) -> None:
    """The run's first jobs: ``main``, plus ``join`` jobs at once for a sweep (``mode: tune``) on
    several workers (for ``mode: run`` they are added when fine-tuning wins, see ``study_started``)."""
    run = store.run(run_id)
    enqueue(store, queue, run_id, "main")
    if run["mode"] == "tune":
        store.update_run(run_id, has_study=True)
        for _ in range(run["workers"] - 1):
            enqueue(store, queue, run_id, "join")


def study_started(store: Store, queue, run_id: int) -> None:
    """The main job of ``advise run`` went on into the study: more workers may join it now."""
    run = store.run(run_id)
    if store.claim_flag(run_id, "has_study") and run["mode"] == "run" and not run["cancel_requested"]:
        for _ in range(run["workers"] - 1):
            enqueue(store, queue, run_id, "join")


def cancel(store: Store, queue, run_id: int) -> bool:
    """Queued jobs are cancelled here; running ones are stopped by their worker, which sees the flag."""
    run = store.run(run_id)
    if run is None or run["status"] in TERMINAL:
        return False
    store.update_run(run_id, cancel_requested=True)
    store.add_event(run_id, None, "log", {"message": "cancel requested"})
    for job in store.jobs(run_id, status=("queued",)):
        if store.finish_job(job["id"], "cancelled", error="cancelled before it started", only_from=("queued",)):
            queue.revoke(job["queue_id"])
    settle(store, queue, run_id)
    return True


def rerun(store: Store, queue, run_id: int, submitter: str) -> int:
    """A new run of the same upload. One that did not complete is continued: same study, and its
    results.json (baselines, verdict) and adapters are the new run's starting point."""
    old = store.run(run_id)
    resume = old["status"] != "complete"
    new_id = store.create_run(name=old["name"], mode=old["mode"], submitter=submitter, bundle_id=old["bundle_id"],
                              task_path=old["task_path"], tune=old["tune"], workers=old["workers"],
                              warnings=old["warnings"], resumes=run_id if resume else None)
    study = old["study_name"] if resume and old["study_name"] else study_name(new_id, old["name"])
    store.update_run(new_id, study_name=study)
    start_run(store, queue, new_id)
    return new_id


def study_name(run_id: int, task_name: str) -> str:
    return f"run-{run_id}-{task_name}"


def _outcome(run: dict, jobs: list[dict]) -> tuple[str, str | None]:
    if run["cancel_requested"]:
        return "cancelled", "cancelled by request"
    decider = next((j for j in reversed(jobs) if j["role"] == "finalize"), None) or \
        next(j for j in jobs if j["role"] == "main")
    if decider["status"] == "complete":
        return "complete", None
    return "failed", decider["error"] or f"job {decider['id']} {decider['status']}"


def settle(store: Store, queue, run_id: int) -> None:
    """Once no job of the run is queued or running: finalize a shared study, or set the run's status."""
    run = store.run(run_id)
    if run is None or run["status"] in TERMINAL:
        return
    jobs = store.jobs(run_id)
    if any(j["status"] in ACTIVE for j in jobs) or not jobs:
        return
    # Several workers on one study, and at least one of them got through: the study holds more than
    # any one job's results.json, so a last job rebuilds it (and the report) from the study.
    shared = run["workers"] > 1 and run["has_study"] and not run["cancel_requested"] and \
        any(j["status"] == "complete" for j in jobs)
    if shared and not any(j["role"] == "finalize" for j in jobs):
        if store.claim_flag(run_id, "finalize_queued"):
            store.update_run(run_id, stage="finalizing: results from the whole study")
            enqueue(store, queue, run_id, "finalize")
        return
    status, error = _outcome(run, jobs)
    if store.update_run(run_id, only_if_active=True, status=status, error=error, finished_at=time.time(),
                        stage=status):
        store.add_event(run_id, None, "status", {"status": status, "error": error})


def reap(store: Store, queue, now: float | None = None) -> list[int]:
    """Fail running jobs whose worker stopped beating; returns their ids."""
    now = time.time() if now is None else now
    reaped = []
    for job in store.jobs(status=("running",)):
        lapse = LAPSE_BEATS * (job["heartbeat_s"] or 10.0)
        if job["heartbeat_at"] is None or job["heartbeat_at"] >= now - lapse:
            continue
        last = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job["heartbeat_at"]))
        error = (f"worker {job['worker']} stopped sending heartbeats (last at {last} UTC): killed, out of memory "
                 "or lost; what was measured is kept, and Re-run continues the run")
        if store.finish_job(job["id"], "failed", error=error, only_from=("running",), stale_before=now - lapse):
            store.add_event(job["run_id"], job["id"], "job", {"job": job["id"], "role": job["role"],
                                                              "status": "failed", "error": error})
            reaped.append(job["id"])
            settle(store, queue, job["run_id"])
    for run in store.runs(limit=50):  # a run left active by a process that died while settling it
        if run["status"] in ACTIVE and run["started_at"] is not None:
            settle(store, queue, run["id"])
    return reaped
