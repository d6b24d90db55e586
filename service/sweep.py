"""A run's study as it stands, read live from the Optuna storage every worker writes to.

The trials become the ``foundation.results.Trial`` records results.json stores (``tuner.summary``),
the Pareto front is marked the way the study's summary marks it, and the table and charts are
the report's own (``reports.studyview``, ``reports.charts``), so the sweep page and report.html
always agree.
"""
from __future__ import annotations

import threading

from markupsafe import Markup

_lock = threading.Lock()
_storages: dict[str, object] = {}


def open_studies(url: str):
    """One Optuna storage per URL for the process (reading only: no heartbeat); creates Optuna's
    tables in a new database."""
    from optuna.storages import RDBStorage

    from tuner.storage import driver_url

    with _lock:
        if url not in _storages:
            kw = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {
                "pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
            _storages[url] = RDBStorage(driver_url(url), engine_kwargs=kw)
        return _storages[url]


def live_trials(url: str, study_name: str) -> list | None:
    """The study's trials (``foundation.results.Trial``, Pareto front marked), or None before it exists."""
    from tuner.summary import pareto_front, result_trial

    storage = open_studies(url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    trials = [result_trial(t) for t in storage.get_all_trials(study_id, deepcopy=False)]
    front = pareto_front(trials)
    for t in trials:
        t.pareto = t.number in front
    return sorted(trials, key=lambda t: t.number)


def study_view(study_name: str, trials: list, best: int | None = None):
    """The report's view of a study (counts, history, Pareto rows) for the live trials."""
    from foundation.results import Study
    from reports.studyview import study_view as view

    running = any(t.state in ("running", "waiting") for t in trials)
    return view(Study(study_name=study_name, storage="", status="running" if running else "complete", sampler="",
                      pruner="", trials=trials, best_trial=best))


def charts(view) -> dict[str, Markup]:
    from reports.charts import history_chart, pareto_chart

    return {"pareto": pareto_chart(view.trials, by="cost"), "latency": pareto_chart(view.trials, by="latency"),
            "history": history_chart(view.history)}


def best_trial(trials: list) -> int | None:
    """The best finished trial by validation quality (the study's own recommendation comes at the end)."""
    done = [t for t in trials if t.state == "complete" and t.validation_quality is not None]
    if not done:
        return None
    return max(done, key=lambda t: (t.validation_quality, -(t.train_cost_usd or 0.0), -t.number)).number


def dashboard_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("optuna_dashboard") is not None


def dashboard_link(settings, study_name: str) -> dict | None:
    """Where optuna-dashboard shows this study (``advise serve --dashboard-url``), or the command
    that starts one on the same storage when it is installed; None when it is not."""
    from tuner.storage import hide_password

    if settings.dashboard_url:
        try:
            study_id = open_studies(settings.study_storage).get_study_id_from_name(study_name)
        except KeyError:
            return None
        return {"url": f"{settings.dashboard_url.rstrip('/')}/dashboard/studies/{study_id}", "command": None}
    if dashboard_installed():
        return {"url": None, "command": f"optuna-dashboard '{hide_password(settings.study_storage)}'"}
    return None
