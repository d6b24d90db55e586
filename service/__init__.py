"""The service: ``advise serve`` (web app + JSON API), ``advise worker`` (takes jobs from the queue)
and ``advise submit`` (a task from a terminal).

- ``service.settings``: what a server or worker is started with (data dir, database, queue, limits, tokens).
- ``service.store``: the state (runs, jobs, progress events, files, uploaded task bundles) in SQLite or
  PostgreSQL, through SQLAlchemy Core.
- ``service.uploads``: an upload made safe (sizes, zip-slip, paths kept inside the upload folder,
  ``trust_remote_code``) and checked with ``advisor.tasks.check_task``, the CLI's own checks.
- ``service.queue``: the job queue (huey: SQLite embedded, Redis for a team) and its consumers.
- ``service.worker``: one job: claim it, unpack the task, run ``service.job`` in its own process,
  heartbeat, relay progress, upload files, cancel; the reaper for jobs whose heartbeat lapsed.
- ``service.job``: the child process: ``advisor.pipeline.run_task`` / ``tune_task``.
- ``service.app``, ``service.api``, ``service.pages``, ``service.auth``, ``service.sweep``: the web app.
- ``service.client``: ``advise submit``.
"""
