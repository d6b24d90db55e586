"""The service's state in SQLite (embedded) or PostgreSQL (a team), through SQLAlchemy Core.

Tables (all prefixed ``advise_``, so Optuna's own tables can share the database):

- ``runs``: one submitted task: status, stage, verdict, best quality, monthly cost, submitter;
- ``jobs``: one process's share of a run (``main``, ``join`` for more workers on its study,
  ``finalize``), with its worker and heartbeat;
- ``events``: progress as the CLI shows it (bars, log lines) and changes, for the live pages;
- ``files``: what a run wrote (results.json after every stage, predictions, adapters, report.html);
- ``bundles``: the uploaded task folder, zipped, so a worker on any machine can unpack it.

Every change of state that two processes could race on is one conditional ``UPDATE``.
"""
from __future__ import annotations

import json
import time

import sqlalchemy as sa

TERMINAL = ("complete", "failed", "cancelled")
ACTIVE = ("queued", "running")

META = sa.MetaData()
RUNS = sa.Table(
    "advise_runs", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("mode", sa.String(10), nullable=False),  # run (advise run) or tune (advise tune)
    sa.Column("status", sa.String(20), nullable=False, default="queued"),
    sa.Column("stage", sa.Text, nullable=False, default="queued"),
    sa.Column("submitter", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False, index=True),
    sa.Column("bundle_id", sa.Integer, nullable=False),
    sa.Column("task_path", sa.String(500), nullable=False),
    sa.Column("tune", sa.Boolean, nullable=False, default=True),
    sa.Column("workers", sa.Integer, nullable=False, default=1),
    sa.Column("study_name", sa.String(300)),
    sa.Column("has_study", sa.Boolean, nullable=False, default=False),
    sa.Column("resumes", sa.Integer),  # the run whose study and results this one continues
    sa.Column("headline", sa.Text),
    sa.Column("winner", sa.String(200)),
    sa.Column("best_quality", sa.Float),
    sa.Column("monthly_cost", sa.Float),
    sa.Column("summary", sa.Text),  # JSON: verdict reasons and cautions, study counts
    sa.Column("warnings", sa.Text),  # JSON list from check_task
    sa.Column("error", sa.Text),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("finalize_queued", sa.Boolean, nullable=False, default=False),
)
JOBS = sa.Table(
    "advise_jobs", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False, index=True),
    sa.Column("role", sa.String(10), nullable=False),  # main, join, finalize
    sa.Column("status", sa.String(20), nullable=False, default="queued"),
    sa.Column("worker", sa.String(300)),
    sa.Column("queue_id", sa.String(100)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("heartbeat_s", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error", sa.Text),
)
EVENTS = sa.Table(
    "advise_events", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False, index=True),
    sa.Column("job_id", sa.Integer),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
FILES = sa.Table(
    "advise_files", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False, index=True),
    sa.Column("job_id", sa.Integer),
    sa.Column("path", sa.String(500), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content", sa.LargeBinary),  # None when too large: `note` says where it is
    sa.Column("note", sa.Text),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("run_id", "path", name="advise_files_run_path"),
)
BUNDLES = sa.Table(
    "advise_bundles", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


def make_engine(url: str) -> sa.Engine:
    from tuner.storage import driver_url

    url = driver_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # readers never wait for the writer; writers wait, never fail
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine
    # a database that does not answer is an error after 10 s, not a hang (psycopg and psycopg2 both take it)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args={"connect_timeout": 10})


class Store:
    """Data access only: the rules (who settles a run, when a job is stale) are in ``service.lifecycle``."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        for attempt in range(5):
            try:
                META.create_all(self.engine)
                break
            except sa.exc.SQLAlchemyError as e:  # two processes creating the tables at once
                if attempt == 4 or not any(s in str(e) for s in ("already exists", "duplicate key", "locked")):
                    raise
                time.sleep(0.3 * (attempt + 1))

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ bundles
    def add_bundle(self, content: bytes, sha256: str) -> int:
        with self.engine.begin() as c:
            return c.execute(BUNDLES.insert().values(sha256=sha256, size=len(content), content=content,
                                                     created_at=time.time())).inserted_primary_key[0]

    def bundle(self, bundle_id: int) -> bytes:
        with self.engine.connect() as c:
            return c.execute(sa.select(BUNDLES.c.content).where(BUNDLES.c.id == bundle_id)).scalar_one()

    # ------------------------------------------------------------ runs
    def create_run(self, **values) -> int:
        now = time.time()
        values = {"status": "queued", "stage": "queued", "created_at": now, "updated_at": now, **values}
        with self.engine.begin() as c:
            return c.execute(RUNS.insert().values(**values)).inserted_primary_key[0]

    def run(self, run_id: int) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(RUNS).where(RUNS.c.id == run_id)).mappings().first()
        return dict(row) if row else None

    def runs(self, *, limit: int = 200, offset: int = 0, since: float | None = None) -> list[dict]:
        q = sa.select(RUNS).order_by(RUNS.c.id.desc()).limit(limit).offset(offset)
        if since is not None:
            q = q.where(RUNS.c.updated_at > since)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def update_run(self, run_id: int, *, only_if_active: bool = False, **values) -> bool:
        """Change a run (and its ``updated_at``); with ``only_if_active`` only while it is not finished."""
        q = RUNS.update().where(RUNS.c.id == run_id)
        if only_if_active:
            q = q.where(RUNS.c.status.in_(ACTIVE))
        with self.engine.begin() as c:
            return c.execute(q.values(updated_at=time.time(), **values)).rowcount == 1

    def claim_flag(self, run_id: int, flag: str) -> bool:
        """Set a boolean column from false to true; True for the one caller that did it."""
        col = RUNS.c[flag]
        with self.engine.begin() as c:
            return c.execute(RUNS.update().where(RUNS.c.id == run_id, col == sa.false())
                             .values(**{flag: True}, updated_at=time.time())).rowcount == 1

    # ------------------------------------------------------------ jobs
    def create_job(self, run_id: int, role: str) -> int:
        with self.engine.begin() as c:
            return c.execute(JOBS.insert().values(run_id=run_id, role=role, status="queued",
                                                  created_at=time.time())).inserted_primary_key[0]

    def job(self, job_id: int) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        return dict(row) if row else None

    def jobs(self, run_id: int | None = None, *, status: tuple[str, ...] | None = None) -> list[dict]:
        q = sa.select(JOBS).order_by(JOBS.c.id)
        if run_id is not None:
            q = q.where(JOBS.c.run_id == run_id)
        if status is not None:
            q = q.where(JOBS.c.status.in_(status))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def update_job(self, job_id: int, **values) -> None:
        with self.engine.begin() as c:
            c.execute(JOBS.update().where(JOBS.c.id == job_id).values(**values))

    def claim_job(self, job_id: int, worker: str, heartbeat_s: float) -> bool:
        """queued → running for this worker; False when it was cancelled or taken meanwhile."""
        now = time.time()
        with self.engine.begin() as c:
            return c.execute(JOBS.update().where(JOBS.c.id == job_id, JOBS.c.status == "queued").values(
                status="running", worker=worker, started_at=now, heartbeat_at=now,
                heartbeat_s=heartbeat_s)).rowcount == 1

    def heartbeat(self, job_id: int) -> bool:
        """False when the job is no longer running (e.g. the reaper failed it)."""
        with self.engine.begin() as c:
            return c.execute(JOBS.update().where(JOBS.c.id == job_id, JOBS.c.status == "running")
                             .values(heartbeat_at=time.time())).rowcount == 1

    def finish_job(self, job_id: int, status: str, *, error: str | None = None, exit_code: int | None = None,
                   only_from: tuple[str, ...] = ACTIVE, stale_before: float | None = None) -> bool:
        """Set a job's final status unless it already has one (or, for the reaper, unless it beat since)."""
        q = JOBS.update().where(JOBS.c.id == job_id, JOBS.c.status.in_(only_from))
        if stale_before is not None:
            q = q.where(JOBS.c.heartbeat_at < stale_before)
        with self.engine.begin() as c:
            return c.execute(q.values(status=status, error=error, exit_code=exit_code,
                                      finished_at=time.time())).rowcount == 1

    # ------------------------------------------------------------ events
    def add_event(self, run_id: int, job_id: int | None, kind: str, data: dict) -> int:
        with self.engine.begin() as c:
            return c.execute(EVENTS.insert().values(run_id=run_id, job_id=job_id, at=time.time(), kind=kind,
                                                    data=json.dumps(data))).inserted_primary_key[0]

    def events(self, run_id: int, *, after: int = 0, limit: int = 1000) -> list[dict]:
        q = (sa.select(EVENTS).where(EVENTS.c.run_id == run_id, EVENTS.c.id > after)
             .order_by(EVENTS.c.id).limit(limit))
        with self.engine.connect() as c:
            return [{**r, "data": json.loads(r["data"])} for r in c.execute(q).mappings()]

    def last_event_id(self, run_id: int) -> int:
        with self.engine.connect() as c:
            return c.execute(sa.select(sa.func.max(EVENTS.c.id)).where(EVENTS.c.run_id == run_id)).scalar() or 0

    # ------------------------------------------------------------ files
    def put_file(self, run_id: int, job_id: int | None, path: str, content: bytes | None, *, size: int,
                 note: str | None = None) -> None:
        values = dict(job_id=job_id, size=size, content=content, note=note, updated_at=time.time())
        with self.engine.begin() as c:
            done = c.execute(FILES.update().where(FILES.c.run_id == run_id, FILES.c.path == path)
                             .values(**values)).rowcount
            if not done:
                try:
                    with c.begin_nested():
                        c.execute(FILES.insert().values(run_id=run_id, path=path, **values))
                except sa.exc.IntegrityError:  # inserted by another writer meanwhile
                    c.execute(FILES.update().where(FILES.c.run_id == run_id, FILES.c.path == path)
                              .values(**values))

    def files(self, run_id: int, prefix: str = "") -> list[dict]:
        cols = [FILES.c.path, FILES.c.size, FILES.c.note, FILES.c.updated_at, FILES.c.job_id]
        q = sa.select(*cols).where(FILES.c.run_id == run_id).order_by(FILES.c.path)
        if prefix:
            q = q.where(FILES.c.path.startswith(prefix, autoescape=True))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def file(self, run_id: int, path: str) -> bytes | None:
        with self.engine.connect() as c:
            return c.execute(sa.select(FILES.c.content).where(FILES.c.run_id == run_id, FILES.c.path == path)
                             ).scalar_one_or_none()
