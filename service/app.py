"""The web app: FastAPI with the JSON API, the pages, the reaper, and (embedded) a local worker pool.

``create_app(settings)`` builds it; ``serve(settings)`` runs it with uvicorn; ``work(settings)``
is ``advise worker``: huey's consumer on the same queue, no web app.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import subprocess
import sys
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from foundation.errors import AdviseError, first_line
from service import api, docs, lifecycle, pages
from service.auth import guard
from service.redaction import install as install_redaction, redact_logs
from service.queue import Queue, make_consumer
from service.settings import Settings, check_bind, check_urls
from service.store import Store
from service.worker import WorkerContext, run_job

log = logging.getLogger("advise.service")
HERE = Path(__file__).parent


async def _reaper(store: Store, queue: Queue, every: float) -> None:
    """Fail jobs whose worker stopped beating, even when no worker is left to notice."""
    while True:
        try:
            await anyio.to_thread.run_sync(lifecycle.reap, store, queue)
        except Exception:  # a database hiccup: try again next time
            log.exception("the reaper failed")
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    settings, store, queue = app.state.settings, app.state.store, app.state.queue
    ctx = WorkerContext(settings, store, queue)
    consumer = None
    if settings.local_workers > 0:
        queue.runner = lambda job_id: run_job(ctx, job_id)
        consumer = make_consumer(queue, settings.local_workers, ctx.stopping, handle_signals=False)
        consumer.start()
    reaper = asyncio.create_task(_reaper(store, queue, settings.heartbeat_s))
    dashboard = _start_dashboard(settings)
    try:
        yield
    finally:
        ctx.stopping.set()
        reaper.cancel()
        if consumer is not None:
            await anyio.to_thread.run_sync(lambda: consumer.stop(graceful=True))
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=10)
        store.close()


def _start_dashboard(settings: Settings):
    """optuna-dashboard on the studies' storage, on loopback (it has no login of its own)."""
    if not settings.dashboard_port:
        return None
    from service.sweep import open_studies

    open_studies(settings.study_storage)  # the dashboard does not create Optuna's tables itself
    code = ("import sys, optuna_dashboard; from tuner.storage import driver_url; "
            "optuna_dashboard.run_server(driver_url(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]))")
    return subprocess.Popen([sys.executable, "-c", code, settings.study_storage, str(settings.dashboard_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def create_app(settings: Settings) -> FastAPI:
    from advisor import __version__

    check_urls(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.dashboard_port and not settings.dashboard_url:
        settings.dashboard_url = f"http://127.0.0.1:{settings.dashboard_port}"
    app = FastAPI(title="advise", version=__version__, lifespan=_lifespan,
                  description="Submit tasks, follow runs and sweeps, read verdicts and reports. "
                              "Authenticate with `Authorization: Bearer <token>` when the server has tokens.",
                  openapi_url=None, docs_url=None, redoc_url=None,  # service.docs: both behind the tokens
                  max_body_size=int(settings.limits.upload_mb * 2**20),
                  form_limits={"max_files": settings.limits.files + 1, "max_fields": 50, "max_part_size": 1 << 20})
    app.state.settings = settings
    app.state.store = open_store(settings)
    app.state.queue = open_queue(settings)
    app.middleware("http")(guard)
    install_redaction(app)
    app.include_router(api.router)
    app.include_router(docs.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def open_store(settings: Settings) -> Store:
    """The state's database, or a one-line error naming --db when it cannot be reached or opened."""
    import sqlalchemy as sa

    try:
        return Store(settings.db_url)
    except sa.exc.SQLAlchemyError as e:
        reason = first_line(getattr(e, "orig", None) or e)
        raise AdviseError(f"cannot open the database: {reason}", where="--db") from None


def open_queue(settings: Settings) -> Queue:
    """The job queue, or a one-line error naming --queue when it cannot be opened or reached."""
    try:
        queue = Queue(settings)
        queue.check()
        return queue
    except Exception as e:  # redis' and sqlite's errors: either way the operator's --queue to fix
        raise AdviseError(f"cannot open the job queue: {first_line(e)}", where="--queue") from None


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts: a port in use is a one-line error."""
    try:
        family = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as e:
        raise AdviseError(f"cannot listen on {host!r}: {e.strerror}", where="--host") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        flag = "--host" if e.errno == errno.EADDRNOTAVAIL else "--port"
        why = "the address is already in use (another server?)" if e.errno == errno.EADDRINUSE else e.strerror
        raise AdviseError(f"cannot listen on {host}:{port}: {why}", where=flag) from None
    return sock


def serve(settings: Settings) -> None:
    """``advise serve``: the app on ``settings.host:port`` until Ctrl-C."""
    import uvicorn

    check_bind(settings)
    app = create_app(settings)  # an unreachable --db is an error before the port is taken
    sock = listen(settings.host, settings.port)
    where = "embedded (SQLite)" if settings.db is None else "shared database"
    print(f"advise serve: http://{_url_host(settings.host)}:{settings.port}  state: {where}, data: {settings.data_dir}, "
          f"local workers: {settings.local_workers}{', tokens required' if settings.tokens else ''}", flush=True)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            timeout_graceful_shutdown=5, proxy_headers=False)  # sets up uvicorn's log handlers
    redact_logs("uvicorn", "uvicorn.error", "uvicorn.access", "advise")
    uvicorn.Server(config).run(sockets=[sock])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def work(settings: Settings, workers: int = 1) -> None:
    """``advise worker``: take jobs from the queue until Ctrl-C (which stops the running jobs cleanly)."""
    check_urls(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("huey").setLevel(logging.WARNING)
    redact_logs()
    store, queue = open_store(settings), open_queue(settings)
    ctx = WorkerContext(settings, store, queue)
    queue.runner = lambda job_id: run_job(ctx, job_id)
    lifecycle.reap(store, queue)
    log.info("advise worker %s: %d job(s) at a time, data in %s", ctx.name, workers, settings.data_dir)
    make_consumer(queue, workers, ctx.stopping, handle_signals=True).run()
    store.close()
