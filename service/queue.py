"""The job queue: huey, with SQLite in the data directory (embedded) or Redis (a team).

A queued message is only a job id; what the job is lives in the database (``service.store``).
Consumers are huey's own: threads inside ``advise serve`` for the local worker pool, and
``advise worker`` on any machine. Each job then runs in a process of its own (``service.worker``).
"""
from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from huey import RedisHuey, SqliteHuey
from huey.consumer import Consumer

log = logging.getLogger("advise.service")
TASK_NAME = "advise.job"


def split_queue_url(url: str) -> tuple[str, str]:
    """(redis URL without our ``queue`` parameter, the queue's name).

    >>> split_queue_url("redis://db:6379/0?queue=team-a")
    ('redis://db:6379/0', 'team-a')
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    name = next((v for k, v in query if k == "queue"), "advise")
    rest = urlencode([(k, v) for k, v in query if k != "queue"])
    return urlunsplit(parts._replace(query=rest)), name


def make_huey(settings):
    if settings.queue is None or settings.queue.startswith("sqlite:///"):
        path = (settings.data_dir / "queue.db") if settings.queue is None else settings.queue[len("sqlite:///"):]
        return SqliteHuey(name="advise", filename=str(path), results=False, utc=True)
    url, name = split_queue_url(settings.queue)
    import redis

    # a Redis that does not answer is an error after 10 s, not a hang (reads wait at most read_timeout, 1 s)
    pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=10, socket_timeout=30)
    return RedisHuey(name=name, connection_pool=pool, results=False, utc=True, read_timeout=1)


class Queue:
    """Enqueue and revoke jobs; on a consumer, ``runner(job_id)`` runs them."""

    def __init__(self, settings):
        self.huey = make_huey(settings)
        self.runner = None

        def execute(job_id: int):
            if self.runner is None:
                raise RuntimeError("this process only enqueues jobs; it has no worker")
            self.runner(int(job_id))

        self._task = self.huey.task(name=TASK_NAME, retries=0)(execute)

    def check(self) -> None:
        """Raise if the queue cannot be reached (Redis: one ping, at most 10 s)."""
        if isinstance(self.huey, RedisHuey):
            self.huey.storage.conn.ping()

    def enqueue(self, job_id: int) -> str:
        message = self._task.s(job_id)
        self.huey.enqueue(message)
        return message.id

    def revoke(self, queue_id: str | None) -> None:
        if queue_id:
            self.huey.revoke_by_id(queue_id, revoke_once=True)


class _Consumer(Consumer):
    """huey's consumer, told when it is stopping so running jobs can stop their process first."""

    def __init__(self, huey, stopping: threading.Event, *, handle_signals: bool, **kw):
        super().__init__(huey, **kw)
        self._stopping = stopping
        self._handle_signals = handle_signals

    def _set_signal_handlers(self):
        if self._handle_signals:  # inside `advise serve`, uvicorn owns the signals
            super()._set_signal_handlers()

    def stop(self, graceful=False):
        self._stopping.set()
        super().stop(graceful=graceful)


def make_consumer(queue: Queue, workers: int, stopping: threading.Event, *, handle_signals: bool) -> Consumer:
    """A consumer of ``workers`` threads; each thread runs one job (a child process) at a time."""
    return _Consumer(queue.huey, stopping, handle_signals=handle_signals, workers=workers, worker_type="thread",
                     periodic=False, initial_delay=0.1, backoff=1.15, max_delay=1.0, check_worker_health=True,
                     shutdown_timeout=120)
