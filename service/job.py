"""The process a job runs in: ``python -m service.job job.json``.

It runs the pipeline the CLI runs (``advisor.pipeline.run_task`` and ``tune_task``) with a
progress that sends events (the bars and lines ``advise run`` shows) to its worker over a pipe,
one JSON object a line. It never touches the database: its worker records what it sends.

Roles: ``main`` (``advise run`` or ``advise tune``), ``join`` (one more worker on the run's study),
``finalize`` (results.json and the report rebuilt from the whole study once every worker is done).
Exit codes: 0 done, 2 the task's error (one line, as the CLI prints it), 3 a study left short,
1 anything else (the traceback is in the job's log).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from foundation.errors import AdviseError
from foundation.progress import Progress

STUDY_WAIT_S = 1800  # how long a joining worker waits for the main job to open the study


class Emitter:
    """One JSON object a line on the worker's pipe."""

    def __init__(self, fd: int | None):
        self._out = os.fdopen(fd, "w", buffering=1, encoding="utf-8") if fd is not None else sys.stderr
        self._lock = threading.Lock()

    def __call__(self, kind: str, **data) -> None:
        from foundation.secrets import redact_values

        line = json.dumps(redact_values({"kind": kind, **data}), default=str)
        with self._lock:
            try:
                self._out.write(line + "\n")
            except (BrokenPipeError, ValueError):  # the worker is gone: so is the point of going on
                os._exit(137)


class EventProgress(Progress):
    """``foundation.progress.Progress`` whose bars and lines become events (advances at most 4 a second)."""

    def __init__(self, emit: Emitter):
        super().__init__(None, enabled=False)
        self.emit = emit
        self._next = 0

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None):
        self._next += 1
        tid = self._next
        started = time.time()
        self.emit("task", id=tid, description=description, total=total, started=started)
        state = {"n": 0, "sent": 0.0}

        def advance(n=1):
            state["n"] += n
            now = time.monotonic()
            if now - state["sent"] >= 0.25 or (total is not None and state["n"] >= total):
                state["sent"] = now
                self.emit("advance", id=tid, completed=state["n"])

        try:
            yield advance
        finally:
            self.emit("done", id=tid, completed=state["n"], seconds=round(time.time() - started, 2))

    def log(self, message: str) -> None:
        self.emit("log", message=message)


def summary(results) -> dict:
    """What the runs page shows: the verdict's headline, the winner, its quality and monthly cost."""
    from reports import build_report

    report = build_report(results, None)
    winner = next((r for r in report.rows if r.winner), None)
    out = {"status": results.status, "headline": report.headline, "recommendation": report.recommendation,
           "winner": report.winner, "best_quality": winner.quality if winner else None,
           "monthly_cost": winner.monthly_cost_usd if winner else None,
           "reasons": list(results.verdict.reasons) if results.verdict else [],
           "cautions": list(results.verdict.cautions) if results.verdict else []}
    study = results.study
    if study is not None:
        best = next((t for t in study.trials if t.number == study.best_trial), None)
        out["study"] = {"status": study.status, "trials": len(study.trials), "best_trial": study.best_trial,
                        "best_eval": study.best_eval.mean if study.best_eval else None,
                        "best_validation": best.validation_quality if best else None,
                        "stopped_reason": study.stopped_reason}
        if results.verdict is None:  # a sweep on its own: its best trial is the headline
            out["best_quality"] = out["study"]["best_eval"] or out["study"]["best_validation"]
            out["winner"] = f"trial {study.best_trial}" if study.best_trial is not None else None
    return out


def _finish(results, task, emit: Emitter) -> None:
    import reports

    reports.write_html(results, task.run_dir)
    emit("summary", **summary(results))


def _wait_for_study(task, storage: str, name: str) -> None:
    """A joining worker starts once the study exists and has its first trial (the pilot, enqueued)."""
    from tuner.storage import open_storage

    rdb = open_storage(storage, task.tune)
    end = time.monotonic() + STUDY_WAIT_S
    while time.monotonic() < end:
        try:
            if rdb.get_all_trials(rdb.get_study_id_from_name(name), deepcopy=False):
                return
        except KeyError:
            pass
        time.sleep(1.0)
    raise AdviseError(f"the study {name} did not start within {STUDY_WAIT_S} s")


def _tune(task, spec: dict, progress, **kw):
    from advisor.pipeline import tune_task

    return tune_task(task, progress=progress, storage=spec["storage"], study_name=spec["study_name"], **kw)


def run_role(spec: dict, emit: Emitter) -> int:
    from advisor.pipeline import run_task
    from advisor.tasks import check_task
    from foundation.results import load_results

    progress = EventProgress(emit)
    checked = check_task(spec["task"])
    task = checked.task
    if task.trust_remote_code and not spec.get("allow_remote_code"):
        raise AdviseError("this server does not run code from model repositories", where="trust_remote_code")
    role, resume = spec["role"], spec["resume"]
    if role == "join":
        _wait_for_study(task, spec["storage"], spec["study_name"])
        _tune(task, spec, progress, resume=True)
        return 0
    if role == "finalize":
        results = _tune(task, spec, progress, resume=True, n_trials=0)
        _finish(results, task, emit)
        return _check_complete(results, task, emit)
    if spec["mode"] == "tune":
        emit("study", study_name=spec["study_name"])
        results = _tune(task, spec, progress, resume=resume)
    else:
        prior = load_results(task.run_dir) if resume and (task.run_dir / "results.json").exists() else None
        results = prior if prior is not None and prior.verdict is not None else run_task(checked, progress, tune=False)
        emit("summary", **summary(results))
        if spec["tune"] and results.verdict is not None and results.verdict.finetune_wins:
            emit("study", study_name=spec["study_name"])
            results = _tune(task, spec, progress, resume=resume)
    _finish(results, task, emit)
    return 0


def _check_complete(results, task, emit: Emitter) -> int:
    if results.study is None:
        return 0
    done = sum(t.state in ("complete", "pruned") for t in results.study.trials)
    if done >= task.tune.n_trials:
        return 0
    emit("failure", message=f"the study has {done} of tune.n_trials {task.tune.n_trials} finished trials: its workers "
                          "stopped before the end; Re-run continues it")
    return 3


def _die_with_parent() -> None:
    """Be killed when the worker that started this process dies, even by SIGKILL: Linux's
    PR_SET_PDEATHSIG, checked against a worker that died before it was set; elsewhere a thread
    that watches for the parent to change."""
    import ctypes
    import signal

    expected = int(os.environ.get("ADVISE_PARENT_PID", "0") or 0)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if expected and os.getppid() != expected:
        os._exit(137)
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(137)

    threading.Thread(target=watch, daemon=True, name="advise-parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    spec.setdefault("storage", os.environ.get("ADVISE_JOB_STORAGE"))  # kept out of job.json: it may hold a password
    fd = os.environ.get("ADVISE_EVENTS_FD")
    emit = Emitter(int(fd) if fd else None)
    _die_with_parent()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return run_role(spec, emit)
    except AdviseError as e:
        emit("failure", message=e.one_line())
        print(f"error: {e.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        emit("failure", message="interrupted")
        return 130
    except Exception as e:
        traceback.print_exc()
        emit("failure", message=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip())
        return 1


if __name__ == "__main__":
    sys.exit(main())
