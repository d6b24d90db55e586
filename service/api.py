"""The JSON API (``/api``): everything the pages show, for scripts and CI pipelines.

Submit a task (multipart: task.yaml and its data files, or one zip of the task folder) and get
its run, or HTTP 422 with the one-line error ``advise validate`` prints; follow the run's
progress as server-sent events; download results.json, the report, predictions and adapters.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import uuid
import zipfile
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from foundation.errors import AdviseError
from foundation.secrets import redact
from foundation.results import Trial
from reports.format import fmt_money, fmt_quality
from service import lifecycle
from service.auth import FILE_CSP, require_read, require_submit
from service.store import TERMINAL
from service.uploads import UploadError, check_upload, find_task, make_bundle, relative_text, save_files

router = APIRouter(prefix="/api")
POLL_S = 0.5
RunId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the run's number")]


class JobOut(BaseModel):
    id: int
    role: str
    status: str
    worker: str | None
    started_at: float | None
    heartbeat_at: float | None
    finished_at: float | None
    exit_code: int | None
    error: str | None


class FileOut(BaseModel):
    path: str
    size: int
    note: str | None
    updated_at: float


class RunOut(BaseModel):
    id: int
    name: str
    mode: str
    status: str
    stage: str
    submitter: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    headline: str | None
    winner: str | None
    best_quality: float | None
    monthly_cost: float | None
    quality_text: str
    cost_text: str
    error: str | None
    tune: bool
    workers: int
    study_name: str | None
    has_study: bool
    resumes: int | None
    cancel_requested: bool
    warnings: list[str]
    url: str


class RunDetail(RunOut):
    jobs: list[JobOut]
    files: list[FileOut]
    summary: dict[str, Any] | None


class EventOut(BaseModel):
    id: int
    job_id: int | None
    at: float
    kind: str
    data: dict[str, Any]


class Health(BaseModel):
    status: str
    version: str
    queue: str
    local_workers: int


def run_out(row: dict) -> RunOut:
    fields = {k: row[k] for k in RunOut.model_fields if k in row}
    fields.update(tune=bool(row["tune"]), has_study=bool(row["has_study"]),
                  cancel_requested=bool(row["cancel_requested"]), warnings=json.loads(row["warnings"] or "[]"),
                  quality_text=fmt_quality(row["best_quality"]) if row["best_quality"] is not None else "",
                  cost_text=fmt_money(row["monthly_cost"]) if row["monthly_cost"] is not None else "",
                  url=f"/runs/{row['id']}")
    return RunOut(**fields)


def run_detail(store, row: dict) -> RunDetail:
    return RunDetail(**run_out(row).model_dump(), jobs=[JobOut(**j) for j in store.jobs(row["id"])],
                     files=[FileOut(**{k: f[k] for k in FileOut.model_fields}) for f in store.files(row["id"])],
                     summary=json.loads(row["summary"]) if row["summary"] else None)


def existing_run(request: Request, run_id: RunId) -> dict:
    row = request.app.state.store.run(run_id)
    if row is None:
        raise HTTPException(404, f"no run {run_id}")
    return row


def submit_upload(state, files: list[tuple[str, Any]], *, task: str | None, mode: str, tune: bool, workers: int,
                  submitter: str) -> int:
    """Unpack, check, bundle and queue an upload: the one path for the API, the form and ``advise submit``.

    Raises UploadError (413/422) or AdviseError (the CLI's one line) before anything is queued.
    """
    settings, store = state.settings, state.store
    root = settings.data_dir / "uploads" / uuid.uuid4().hex
    root.mkdir(parents=True)
    try:
        names = save_files(files, root, settings.limits)
        task_rel = find_task(root, names, task)
        upload = check_upload(root, task_rel, allow_remote_code=settings.allow_remote_code)
        t = upload.checked.task
        content, sha = make_bundle(root, exclude=t.run_dir)
        bundle_id = store.add_bundle(content, sha)
        run_id = store.create_run(name=t.name, mode=mode, submitter=submitter[:100], bundle_id=bundle_id,
                                  task_path=task_rel, tune=tune, workers=workers,
                                  warnings=json.dumps([relative_text(w, root) for w in upload.checked.warnings]))
        store.update_run(run_id, study_name=lifecycle.study_name(run_id, t.name))
        try:
            lifecycle.start_run(store, state.queue, run_id)
        except Exception as e:  # the queue is down: say so, and leave no run waiting forever
            store.update_run(run_id, status="failed", stage="failed", error=redact(f"could not queue the run: {e}"))
            raise HTTPException(503, f"the job queue is not reachable: {str(e).splitlines()[0]}") from None
        return run_id
    finally:
        shutil.rmtree(root, ignore_errors=True)


@router.get("/health", response_model=Health, summary="Liveness, and how the server is set up")
def health(request: Request) -> Health:
    from advisor import __version__

    s = request.app.state.settings
    return Health(status="ok", version=__version__, queue="sqlite" if s.queue is None else s.queue.split(":")[0],
                  local_workers=s.local_workers)


@router.get("/runs", response_model=list[RunOut], summary="Every run, newest first")
def list_runs(request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 100,
              offset: Annotated[int, Query(ge=0, le=10**9)] = 0, _=Depends(require_read)) -> list[RunOut]:
    return [run_out(r) for r in request.app.state.store.runs(limit=limit, offset=offset)]


@router.post("/runs", response_model=RunOut, status_code=201, summary="Submit a task",
             responses={413: {"description": "upload too large"},
                        422: {"description": "the task's error, as `advise validate` prints it"}})
def submit(request: Request, response: Response,
           files: Annotated[list[UploadFile], File(description="task.yaml and its data files (names may hold "
                                                               "relative folders), or one zip of the task folder")],
           task: Annotated[str | None, Form(max_length=1000, description="task.yaml's path in the upload")] = None,
           mode: Annotated[Literal["run", "tune"], Form(description="run: advise run; tune: advise tune")] = "run",
           tune: Annotated[bool, Form(description="go on into the study when fine-tuning wins")] = True,
           workers: Annotated[int, Form(ge=1, le=16, description="workers sharing the study")] = 1,
           submitter: Annotated[str | None, Form(max_length=100)] = None,
           user=Depends(require_submit)) -> RunOut:
    name = user.name if user.secret else (submitter or "local")
    try:
        run_id = submit_upload(request.app.state, [(f.filename or "", f.file) for f in files], task=task, mode=mode,
                               tune=tune, workers=workers, submitter=name)
    except UploadError as e:
        raise HTTPException(e.status, e.message) from None
    except AdviseError as e:
        raise HTTPException(422, e.one_line()) from None
    response.headers["Location"] = f"/api/runs/{run_id}"
    return run_out(request.app.state.store.run(run_id))


@router.get("/runs/{run_id}", response_model=RunDetail, summary="A run: status, verdict, jobs, files")
def get_run(request: Request, run=Depends(existing_run), _=Depends(require_read)) -> RunDetail:
    return run_detail(request.app.state.store, run)


@router.post("/runs/{run_id}/cancel", response_model=RunOut, summary="Cancel a queued or running run",
             responses={409: {"description": "the run has already finished"}})
def cancel_run(request: Request, run=Depends(existing_run), _=Depends(require_submit)) -> RunOut:
    state = request.app.state
    if not lifecycle.cancel(state.store, state.queue, run["id"]):
        raise HTTPException(409, f"run {run['id']} has already finished ({run['status']})")
    return run_out(state.store.run(run["id"]))


@router.post("/runs/{run_id}/rerun", response_model=RunOut, status_code=201,
             summary="Run the same upload again (an unfinished run is continued: same study, its results kept)")
def rerun_run(request: Request, run=Depends(existing_run), user=Depends(require_submit)) -> RunOut:
    state = request.app.state
    if run["status"] not in TERMINAL:
        raise HTTPException(409, f"run {run['id']} is still {run['status']}; cancel it first")
    new_id = lifecycle.rerun(state.store, state.queue, run["id"], user.name if user.secret else run["submitter"])
    return run_out(state.store.run(new_id))


@router.get("/runs/{run_id}/progress", response_model=list[EventOut], summary="Progress events after `after`")
def progress(request: Request, run=Depends(existing_run), after: Annotated[int, Query(ge=0, le=2**62)] = 0,
             _=Depends(require_read)) -> list[EventOut]:
    return [EventOut(**e) for e in request.app.state.store.events(run["id"], after=after)]


@router.get("/runs/{run_id}/events", response_class=EventSourceResponse,
            summary="Server-sent events: progress (task, advance, done, log, job, summary, status), `run` on every "
                    "change, `end` once the run has finished")
async def run_events(request: Request, run=Depends(existing_run), after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                     _=Depends(require_read)):
    store = request.app.state.store
    last = max(after, _last_event_id(request))
    seen = None
    while True:
        events = await anyio.to_thread.run_sync(lambda: store.events(run["id"], after=last, limit=500))
        for e in events:
            last = e["id"]
            yield ServerSentEvent(data={**e["data"], "job_id": e["job_id"], "at": e["at"]}, event=e["kind"],
                                  id=str(e["id"]))
        row = await anyio.to_thread.run_sync(store.run, run["id"])
        if row["updated_at"] != seen:
            seen = row["updated_at"]
            yield ServerSentEvent(data=run_out(row).model_dump(), event="run")
        if row["status"] in TERMINAL and not events:
            yield ServerSentEvent(data={"status": row["status"]}, event="end")
            return
        await anyio.sleep(POLL_S)


def _last_event_id(request: Request) -> int:
    value = request.headers.get("last-event-id", "")
    return int(value) if value.isdigit() and len(value) < 18 else 0


@router.get("/events", response_class=EventSourceResponse, summary="Server-sent events: `run` whenever any run changes")
async def all_events(request: Request, since: Annotated[float | None, Query(ge=0, le=1e11, description=(
        "send runs changed after this time (a run's `updated_at`); default: from now on"))] = None,
                     _=Depends(require_read)):
    store = request.app.state.store
    if since is None:
        rows = await anyio.to_thread.run_sync(lambda: store.runs(limit=1))
        since = max((r["updated_at"] for r in rows), default=0.0)
    while True:
        changed = await anyio.to_thread.run_sync(lambda: store.runs(limit=200, since=since))
        for row in reversed(changed):
            since = max(since, row["updated_at"])
            yield ServerSentEvent(data=run_out(row).model_dump(), event="run")
        await anyio.sleep(POLL_S * 2)


def _file_response(content: bytes, filename: str, media_type: str, inline: bool = False) -> Response:
    disposition = "inline" if inline else f'attachment; filename="{re.sub(r"[^A-Za-z0-9._-]", "_", filename)}"'
    return Response(content, media_type=media_type, headers={"Content-Disposition": disposition,
                                                             "Content-Security-Policy": FILE_CSP,
                                                             "Cache-Control": "no-store"})


def _stored(request: Request, run: dict, path: str) -> bytes:
    content = request.app.state.store.file(run["id"], path)
    if content is None:
        raise HTTPException(404, f"run {run['id']} has no {path} (yet)")
    return content


@router.get("/runs/{run_id}/results", summary="results.json as it stands (rewritten after every stage)")
def results(request: Request, run=Depends(existing_run), _=Depends(require_read)) -> Response:
    # results.json writes an unpriced cost as NaN and an endless one as Infinity; JSON has neither: null.
    data = json.loads(_stored(request, run, "results.json"), parse_constant=lambda _: None)
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@router.get("/runs/{run_id}/report", summary="report.html (self-contained; served sandboxed)",
            response_class=Response, responses={200: {"content": {"text/html": {}}}})
def report(request: Request, run=Depends(existing_run), _=Depends(require_read)) -> Response:
    return _file_response(_stored(request, run, "report.html"), "report.html", "text/html; charset=utf-8", inline=True)


@router.get("/runs/{run_id}/files", response_model=list[FileOut], summary="What the run wrote")
def files(request: Request, run=Depends(existing_run), _=Depends(require_read)) -> list[FileOut]:
    return [FileOut(**{k: f[k] for k in FileOut.model_fields}) for f in request.app.state.store.files(run["id"])]


@router.get("/runs/{run_id}/files/{path:path}", summary="Download one file (predictions, logs, trials.csv, ...)",
            response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
def download(request: Request, path: Annotated[str, Path(max_length=500)], run=Depends(existing_run),
             _=Depends(require_read)) -> Response:
    content = _stored(request, run, path)
    media = "application/json" if path.endswith(".json") else "text/plain; charset=utf-8" if path.endswith(
        (".jsonl", ".csv", ".log", ".txt", ".md")) else "application/octet-stream"
    return _file_response(content, path.replace("/", "_"), media)


@router.get("/runs/{run_id}/adapters/{name}.zip", summary="An adapter folder (pilot, best, trial-N) as a zip",
            response_class=Response, responses={200: {"content": {"application/zip": {}}}})
def adapter(request: Request, name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,100}$")],
            run=Depends(existing_run), _=Depends(require_read)) -> Response:
    store = request.app.state.store
    prefix = f"adapters/{name}/"
    listed = [f for f in store.files(run["id"], prefix) if f["note"] is None]
    if not listed:
        raise HTTPException(404, f"run {run['id']} has no adapter {name!r}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in listed:
            z.writestr(f"{name}/{f['path'][len(prefix):]}", store.file(run["id"], f["path"]) or b"")
    return _file_response(buf.getvalue(), f"{run['name']}-{name}.zip", "application/zip")


@router.get("/runs/{run_id}/trials", response_model=list[Trial] | None,
            summary="The study's trials as they stand, read from the Optuna storage (null before it starts)")
def trials(request: Request, run=Depends(existing_run), _=Depends(require_read)) -> list[Trial] | None:
    from service.sweep import live_trials

    if not run["study_name"] or not run["has_study"]:
        return None
    return live_trials(request.app.state.settings.study_storage, run["study_name"])
