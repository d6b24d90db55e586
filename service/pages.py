"""The pages: runs (with the submit form), one run, its sweep, and the login form.

Rendered with Jinja2 (autoescaped: model output and file names show as text), kept live by
``static/app.js`` from the API's server-sent events. Forms work without JavaScript too.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from foundation.errors import AdviseError
from reports.format import fmt_money, fmt_params, fmt_quality, fmt_seconds
from service import lifecycle
from service.api import existing_run, run_detail, run_out, submit_upload
from service.auth import COOKIE, require_read, require_submit, who
from service.settings import find_token
from service.store import TERMINAL
from service.uploads import UploadError

router = APIRouter(include_in_schema=False)
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters.update(q=fmt_quality, money=fmt_money, secs=fmt_seconds, params=fmt_params,
                             when=lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "")


def _page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
    user = who(request)
    context.update(user=user, tokens=bool(request.app.state.settings.tokens),
                   can_submit=user is not None and user.role == "submit")
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status)


@router.get("/", response_class=HTMLResponse)
def runs_page(request: Request, _=Depends(require_read)):
    rows = request.app.state.store.runs(limit=200)
    since = max((r["updated_at"] for r in rows), default=0.0)
    return _page(request, "runs.html", runs=[run_out(r) for r in rows], error=None, since=since)


@router.post("/submit")
def submit_form(request: Request, files: Annotated[list[UploadFile] | None, File()] = None,
                task: Annotated[str | None, Form(max_length=1000)] = None,
                mode: Annotated[str, Form(pattern="^(run|tune)$")] = "run",
                tune: Annotated[bool, Form()] = False, workers: Annotated[int, Form(ge=1, le=16)] = 1,
                submitter: Annotated[str | None, Form(max_length=100)] = None, user=Depends(require_submit)):
    """The form's submission (the page's script posts the same fields to /api/runs instead)."""
    name = user.name if user.secret else (submitter or "local")
    try:
        run_id = submit_upload(request.app.state, [(f.filename or "", f.file) for f in files or []], task=task or None,
                               mode=mode, tune=tune, workers=workers, submitter=name)
    except (UploadError, AdviseError) as e:
        message = e.message if isinstance(e, UploadError) else e.one_line()
        rows = [run_out(r) for r in request.app.state.store.runs(limit=200)]
        return _page(request, "runs.html", status=getattr(e, "status", 422), runs=rows, error=message, since=None)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run=Depends(existing_run), _=Depends(require_read)):
    store = request.app.state.store
    detail = run_detail(store, run)
    adapters = sorted({f.path.split("/")[1] for f in detail.files if f.path.startswith("adapters/")
                       and f.path.count("/") >= 2 and f.note is None})
    downloads = [f for f in detail.files if not f.path.startswith("adapters/") and f.path != "report.html"]
    return _page(request, "run.html", run=detail, adapters=adapters, downloads=downloads,
                 has_report=any(f.path == "report.html" for f in detail.files), finished=run["status"] in TERMINAL)


def _sweep_context(request: Request, run: dict) -> dict:
    from service.sweep import best_trial, charts, dashboard_link, live_trials, study_view

    settings = request.app.state.settings
    trials = live_trials(settings.study_storage, run["study_name"]) if run["has_study"] else None
    if not trials:
        return {"run": run_out(run), "view": None, "charts": None, "dashboard": None}
    view = study_view(run["study_name"], trials, best_trial(trials))
    return {"run": run_out(run), "view": view, "charts": charts(view),
            "dashboard": dashboard_link(settings, run["study_name"])}


@router.get("/runs/{run_id}/sweep", response_class=HTMLResponse)
def sweep_page(request: Request, run=Depends(existing_run), _=Depends(require_read)):
    last = request.app.state.store.last_event_id(run["id"])
    return _page(request, "sweep.html", last_event=last, **_sweep_context(request, run))


@router.get("/runs/{run_id}/sweep/fragment", response_class=HTMLResponse)
def sweep_fragment(request: Request, run=Depends(existing_run), _=Depends(require_read)):
    return _page(request, "sweep_body.html", **_sweep_context(request, run))


@router.post("/runs/{run_id}/cancel")
def cancel_form(request: Request, run=Depends(existing_run), _=Depends(require_submit)):
    lifecycle.cancel(request.app.state.store, request.app.state.queue, run["id"])
    return RedirectResponse(f"/runs/{run['id']}", status_code=303)


@router.post("/runs/{run_id}/rerun")
def rerun_form(request: Request, run=Depends(existing_run), user=Depends(require_submit)):
    if run["status"] not in TERMINAL:
        raise HTTPException(409, f"run {run['id']} is still {run['status']}; cancel it first")
    state = request.app.state
    new_id = lifecycle.rerun(state.store, state.queue, run["id"], user.name if user.secret else run["submitter"])
    return RedirectResponse(f"/runs/{new_id}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/"):
    return _page(request, "login.html", next=_local_path(next), error=None)


@router.post("/login")
def login(request: Request, token: Annotated[str, Form(max_length=500)], next: Annotated[str, Form()] = "/"):
    found = find_token(request.app.state.settings.tokens, token)
    if found is None:
        return _page(request, "login.html", status=401, next=_local_path(next), error="unknown token")
    response = RedirectResponse(_local_path(next), status_code=303)
    response.set_cookie(COOKIE, found.secret, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        max_age=30 * 24 * 3600)
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _local_path(target: str) -> str:
    """Only redirect within this site (``next=//evil.example`` would leave it)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
