"""One job on a worker: claim it, unpack the task, run ``service.job`` in a process of its own,
and look after it until it ends.

While the child runs, this thread writes the job's heartbeat, relays the child's progress events
to the database, uploads the files of the run directory that changed (results.json is rewritten
after every stage, so what was measured is in the database as soon as it exists), and stops the
child when the run is cancelled or the worker is stopping. The child dies with its worker
(``PR_SET_PDEATHSIG``, set by ``service.job`` itself), so a ``kill -9`` of the worker leaves no
orphan training on: the job's heartbeat lapses and the reaper fails it.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from foundation.secrets import redact
from service import lifecycle
from service.sync import FileSync
from service.uploads import relative_text, safe_name, unpack_bundle

log = logging.getLogger("advise.service")
STOP_GRACE_S = 30  # after SIGINT, the child may save what it measured for this long


@dataclass
class WorkerContext:
    settings: object
    store: object
    queue: object
    stopping: threading.Event = field(default_factory=threading.Event)
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def run_job(ctx: WorkerContext, job_id: int) -> None:
    """The huey task: run job ``job_id`` if it is still queued; always settle its run afterwards."""
    store = ctx.store
    if not store.claim_job(job_id, ctx.name, ctx.settings.heartbeat_s):
        return  # cancelled, or taken, meanwhile
    job = store.job(job_id)
    run = store.run(job["run_id"])
    store.update_run(run["id"], only_if_active=True, status="running", started_at=run["started_at"] or time.time())
    store.add_event(run["id"], job_id, "job", {"job": job_id, "role": job["role"], "status": "running",
                                              "worker": ctx.name})
    log.info("job %s (run %s, %s) started", job_id, run["id"], job["role"])
    status, error, code = "failed", None, None
    try:
        status, error, code = _run(ctx, job, run)
    except Exception as e:  # the worker's own failure (disk, database): the job fails, the worker goes on
        log.exception("job %s failed in the worker", job_id)
        error = redact(f"the worker failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    finally:
        if store.finish_job(job_id, status, error=error, exit_code=code):
            store.add_event(run["id"], job_id, "job", {"job": job_id, "role": job["role"], "status": status,
                                                      "error": error})
        log.info("job %s (run %s) %s%s", job_id, run["id"], status, f": {error}" if error else "")
        lifecycle.settle(store, ctx.queue, run["id"])


def _prepare(ctx: WorkerContext, job: dict, run: dict) -> tuple[Path, Path]:
    """Unpack the task into the job folder; a continued run starts from the files it inherits."""
    job_dir = ctx.settings.data_dir / "jobs" / str(job["id"])
    task_root = job_dir / "task"
    unpack_bundle(ctx.store.bundle(run["bundle_id"]), task_root, ctx.settings.limits)
    task_file = task_root / run["task_path"]
    return job_dir, task_file


def _spec(ctx: WorkerContext, job: dict, run: dict, task_file: Path) -> dict:
    return {"job": job["id"], "run": run["id"], "role": job["role"], "mode": run["mode"], "task": str(task_file),
            "tune": bool(run["tune"]), "study_name": run["study_name"],  # the storage URL: ADVISE_JOB_STORAGE
            "resume": bool(run["resumes"]) or job["role"] != "main", "allow_remote_code": ctx.settings.allow_remote_code,
            "heartbeat_s": ctx.settings.heartbeat_s}


def _seed_files(ctx: WorkerContext, run: dict, job: dict, run_dir: Path) -> None:
    """What the run (or the run it continues) already has: results.json and adapters."""
    store = ctx.store
    source = run["resumes"] if job["role"] == "main" else run["id"]
    if source is None:
        return
    adapters = job["role"] != "join"  # a joining worker trains its own; the others evaluate the best
    for f in store.files(source):
        if f["path"] == "results.json" or (adapters and f["path"].startswith("adapters/")):
            content = store.file(source, f["path"])
            if content is not None:
                target = run_dir / safe_name(f["path"])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)


def _run(ctx: WorkerContext, job: dict, run: dict) -> tuple[str, str | None, int | None]:
    from advisor.tasks import load_task

    job_dir, task_file = _prepare(ctx, job, run)
    run_dir = load_task(task_file).run_dir
    _seed_files(ctx, run, job, run_dir)
    spec_path = job_dir / "job.json"
    spec_path.write_text(json.dumps(_spec(ctx, job, run, task_file)), encoding="utf-8")
    sync = FileSync(ctx.store, ctx.settings.limits, run["id"], job["id"], run_dir, role=job["role"])
    sync.skip_unchanged()  # the inherited files are already stored
    read_fd, write_fd = os.pipe()
    log_path = job_dir / "job.log"
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen([sys.executable, "-m", "service.job", str(spec_path)], stdin=subprocess.DEVNULL,
                                 stdout=log_file, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                                 env={**os.environ, "ADVISE_EVENTS_FD": str(write_fd), "PYTHONUNBUFFERED": "1",
                                      "ADVISE_JOB_STORAGE": ctx.settings.study_storage,  # may hold a password: no file
                                      "ADVISE_PARENT_PID": str(os.getpid())},
                                 start_new_session=True, cwd=str(job_dir))
    os.close(write_fd)
    relay = _Relay(ctx, job, run, read_fd)
    relay.start()
    stopped_by = _supervise(ctx, job, child, sync)
    relay.join(timeout=10)
    sync.sync()
    sync.put_log(log_path)
    return _outcome(child.returncode, stopped_by, relay.error, log_path)


def _supervise(ctx: WorkerContext, job: dict, child: subprocess.Popen, sync) -> str | None:
    """Heartbeat, sync and watch for a stop until the child ends; returns who stopped it, if anyone."""
    store, beat = ctx.store, ctx.settings.heartbeat_s
    stopped_by, deadline, next_beat = None, None, 0.0
    while child.poll() is None:
        now = time.monotonic()
        if now >= next_beat:
            next_beat = now + beat
            alive = store.heartbeat(job["id"])
            lifecycle.reap(store, ctx.queue)
            sync.sync()
            if stopped_by is None:
                run = store.run(job["run_id"])
                current = store.job(job["id"])
                if run["cancel_requested"]:
                    stopped_by = "cancel"
                elif ctx.stopping.is_set():
                    stopped_by = "worker stopping"
                elif not alive or current["status"] != "running":
                    stopped_by = "reaped"
                if stopped_by is not None:
                    os.killpg(child.pid, signal.SIGINT)  # the study marks its trial interrupted, results are saved
                    deadline = now + STOP_GRACE_S
        if deadline is not None and now >= deadline:
            os.killpg(child.pid, signal.SIGKILL)
            deadline = None
        try:
            child.wait(timeout=min(0.5, beat))
        except subprocess.TimeoutExpired:
            pass
        if ctx.stopping.is_set() and stopped_by is None:
            next_beat = 0.0  # notice at once
    return stopped_by


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_bytes()[-8000:].decode("utf-8", "replace")
    except OSError:
        return ""
    tail = [line for line in redact(text).splitlines() if line.strip()][-lines:]
    return " | ".join(t.strip()[:300] for t in tail)


def _outcome(code: int, stopped_by: str | None, error: str | None, log_path: Path) -> tuple[str, str | None, int]:
    if stopped_by == "cancel":
        return "cancelled", "cancelled by request", code
    if stopped_by == "worker stopping":
        return "failed", "the worker was stopped while the job ran; Re-run continues the run", code
    if stopped_by == "reaped":
        return "failed", "the job was failed after its heartbeat lapsed", code
    if code == 0:
        return "complete", None, code
    if error:
        return "failed", error, code
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        why = " (out of memory?)" if -code == signal.SIGKILL else ""
        return "failed", f"the job's process was killed by {name}{why}; last log lines: {_log_tail(log_path)}", code
    return "failed", f"the job's process exited with code {code}; last log lines: {_log_tail(log_path)}", code


class _Relay(threading.Thread):
    """Child events (one JSON object a line on a pipe) into the database; some change the run."""

    def __init__(self, ctx: WorkerContext, job: dict, run: dict, fd: int):
        super().__init__(daemon=True, name=f"advise-relay-{job['id']}")
        self.ctx, self.job, self.run_id, self.fd = ctx, job, run["id"], fd
        self.error: str | None = None
        self.job_dir = ctx.settings.data_dir / "jobs" / str(job["id"])

    def run(self) -> None:
        with os.fdopen(self.fd, "r", encoding="utf-8", errors="replace") as pipe:
            for line in pipe:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                try:
                    self._handle(event.pop("kind", "log"), event)
                except Exception:  # a database hiccup must not stop the relay
                    log.exception("could not record an event of job %s", self.job["id"])

    def _handle(self, kind: str, data: dict) -> None:
        store, run_id = self.ctx.store, self.run_id
        if isinstance(data.get("message"), str):  # the worker's folders are no one's business: paths as in the upload
            data["message"] = relative_text(relative_text(data["message"], self.job_dir / "task"), self.job_dir)
        if kind == "failure":
            self.error = data.get("message")
        elif kind == "summary":
            store.update_run(run_id, headline=data.get("headline"), winner=data.get("winner"),
                             best_quality=data.get("best_quality"), monthly_cost=data.get("monthly_cost"),
                             summary=json.dumps(data))
        elif kind == "study":
            lifecycle.study_started(store, self.ctx.queue, run_id)
        elif kind == "task" and self.job["role"] in ("main", "finalize"):
            store.update_run(run_id, stage=str(data.get("description", ""))[:300])
        store.add_event(run_id, self.job["id"], kind, data)
