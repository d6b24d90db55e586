"""Where a study lives: an Optuna RDB storage (SQLite in the run directory by default, PostgreSQL
for a sweep over several machines) with heartbeats, and the checks made when joining one."""
from __future__ import annotations

import re
import time
from pathlib import Path

from foundation.errors import AdviseError
from foundation.paths import display_path


def driver_url(url: str) -> str:
    """Pick an installed PostgreSQL driver: SQLAlchemy 2.1 defaults ``postgresql://`` to psycopg 3.

    >>> driver_url("sqlite:///study.db")
    'sqlite:///study.db'
    """
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def hide_password(url: str) -> str:
    """A storage URL fit to print.

    >>> hide_password("postgresql://me:secret@db/sweeps")
    'postgresql://me:***@db/sweeps'
    """
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def resolve_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path in ``url`` made absolute against ``base`` (the task file's folder, as
    every other path in task.yaml), not against the folder the command runs in.

    >>> resolve_sqlite("sqlite:///runs/study.db", Path("/tasks/a"))
    'sqlite:////tasks/a/runs/study.db'
    >>> resolve_sqlite("sqlite:////abs/study.db", Path("/tasks/a"))
    'sqlite:////abs/study.db'
    """
    match = re.match(r"(sqlite(\+\w+)?:///)([^?]*)(.*)$", url)
    if not match or not match.group(3) or match.group(3) == ":memory:" or match.group(3).startswith("/"):
        return url
    return match.group(1) + str(Path(base, match.group(3)).absolute()) + match.group(4)


def check_storage_url(url: str) -> str | None:
    """Why ``url`` cannot be an Optuna storage here (unknown scheme, driver not installed), or None.

    >>> check_storage_url("foo://bar")
    "unknown database kind 'foo'; use sqlite:///path/study.db or postgresql://user@host/db"
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(driver_url(url))
    except ArgumentError as e:
        return f"not a database URL: {e}"
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return (f"unknown database kind {parsed.drivername.split('+')[0]!r}; use sqlite:///path/study.db or "
                "postgresql://user@host/db")
    try:
        dialect.import_dbapi()
    except ImportError:
        return (f"the {dialect.driver} driver for {parsed.get_backend_name()} is not installed: "
                "pip install 'advise[postgres]' (or the driver your database needs)")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return "an in-memory SQLite study would vanish with the process; give a file: sqlite:///path/study.db"
        return _sqlite_file_problem(Path(parsed.database))
    return None


def _sqlite_file_problem(path: Path) -> str | None:
    """Why SQLite could not keep a study at ``path``: its folder is missing, or the path is a
    folder or a file that is not an SQLite database."""
    if not path.parent.is_dir():
        return f"the folder of the SQLite study {path} does not exist"
    if path.is_dir():
        return f"the SQLite study {path} is a folder; give a file: sqlite:///path/study.db"
    if path.exists():
        try:
            with path.open("rb") as f:
                head = f.read(16)
        except OSError as e:
            return f"cannot read the SQLite study {path}: {e.strerror}"
        if head and head != b"SQLite format 3\x00":
            return f"{path} is not an SQLite database; give a new or an existing study file"
    return None


def open_storage(url: str, tune):
    """The Optuna RDB storage at ``url`` with heartbeats every ``tune.heartbeat_s``; a trial whose
    worker stopped beating for ``2 × heartbeat_s`` is failed and retried up to ``tune.max_retry``."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = driver_url(url)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {
        "pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}  # a silent server: an error in 10 s, not a hang
    for attempt in range(6):
        try:
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=tune.heartbeat_s,
                              grace_period=2 * tune.heartbeat_s,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=tune.max_retry))
        except Exception as e:
            # Workers starting together on a fresh database race to create Optuna's tables;
            # the loser sees a duplicate-key error (SQLite: a UNIQUE constraint) and finds the tables
            # there on the next try.
            if attempt < 5 and any(s in str(e) for s in ("duplicate key", "UNIQUE constraint failed", "already exists",
                                               "database is locked")):
                time.sleep(0.5 + attempt)
                continue
            raise AdviseError(f"cannot open the study storage {hide_password(url)}: {str(e).splitlines()[0]}",
                              where="tune.storage") from None


def check_same_search(study, tune, url: str, task_file=None) -> None:
    """A study's distributions are fixed by the ``tune.search`` it started with: resuming or joining
    it with other ranges would fail trial after trial, so say so once, before anything runs."""
    current = {k: v.model_dump(exclude_none=True) for k, v in sorted(tune.search.items())}
    stored = study.user_attrs.get("search")
    if stored is None:
        study.set_user_attr("search", current)
        return
    changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if changed:
        raise AdviseError(
            f"the study in {hide_password(url)} was started with other tune.search ranges "
            f"(changed: {', '.join(changed)}); put them back in task.yaml to continue it, or run "
            "`advise tune` without --resume to start a new study", file=display_path(task_file) if task_file else None,
            where="tune.search")


def finished_trials(path: Path) -> tuple[int, float | None] | None:
    """(finished trials, best validation quality) of the SQLite study file at ``path``; (0, None) when
    it holds none, None when it cannot be read as a study (then it is kept, to be safe).

    >>> finished_trials(Path("/nonexistent/study.db")) is None
    True
    """
    import sqlite3

    if not path.is_file():
        return None
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            n = con.execute("SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[0]
            best = con.execute("SELECT MAX(v.value) FROM trial_values v JOIN trials t ON t.trial_id = v.trial_id "
                               "WHERE t.state = 'COMPLETE'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return int(n), (float(best) if best is not None else None)


def describe_finished(found: tuple[int, float | None]) -> str:
    """How a study's finished trials are told in a message.

    >>> describe_finished((3, 0.5))
    '3 finished trials, best validation quality 0.500'
    """
    n, best = found
    return f"{n} finished trial{'s' if n != 1 else ''}" + (f", best validation quality {best:.3f}" if best is not None
                                                           else "")


def set_aside_study(run_dir: Path, notes: list[str]) -> None:
    """Before a fresh study in ``run_dir/study.db``: a study with finished trials becomes
    study.db.prev (replacing an older one); an empty one is deleted, so study.db.prev always holds
    the last study that measured something."""
    import os

    current = run_dir / "study.db"
    if not current.exists():
        return
    found = finished_trials(current)
    if found is not None and found[0] == 0:
        current.unlink()
        return
    os.replace(current, run_dir / "study.db.prev")
    what = f" ({describe_finished(found)})" if found else ""
    notes.append(f"the previous study.db{what} was moved to study.db.prev (use --resume to continue a study)")
