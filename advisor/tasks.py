"""Loading and checking a task for a command, the same way for the CLI and the service.

``load_task`` reads task.yaml and its sections (``foundation.taskfile``) and adds the checks
only a stage can make (which PEFT methods and hyperparameters the tuner knows).
``check_task`` then runs every check a run needs before any model is loaded: data, splits,
corpus. ``advise validate``, ``advise run``, ``advise tune`` and the service all start here, so
what validate accepts is what a run can use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from foundation.config import TaskConfig
from foundation.errors import AdviseError
from foundation.paths import display_path
from foundation.taskfile import load_task as read_task


def load_task(path: str | Path) -> TaskConfig:
    """Read and validate a task.yaml; every error is an AdviseError naming the file and the key.

    >>> load_task("missing.yaml")
    Traceback (most recent call last):
    foundation.errors.AdviseError: missing.yaml: file not found
    """
    from tuner.methods import check_tune_section

    task = read_task(path)
    problem = check_tune_section(task.tune)
    if problem:
        where, message = problem
        raise AdviseError(message, file=display_path(Path(path)), where=where)
    return task


@dataclass
class CheckedTask:
    """A task that passed every check a run makes before loading a model, with its data loaded."""

    task: TaskConfig
    splits: object  # foundation.data.Splits
    corpus: list  # foundation.corpus.Document
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = self.splits.stats
        formats = ", ".join(f"{k}: {v}" for k, v in s["formats"].items())
        return (f"task '{self.task.name}', formats ({formats}), train {s['sizes']['train']}, "
                f"validation {s['sizes']['validation']}, eval {s['sizes']['eval']}, "
                f"corpus documents {len(self.corpus)}, metric {self.task.metric.name}")


def check_task(path_or_task: str | Path | TaskConfig) -> CheckedTask:
    """``load_task`` (unless given a loaded task), then the data, the splits and the corpus."""
    from foundation.corpus import load_corpus
    from foundation.data import load_splits

    task = path_or_task if isinstance(path_or_task, TaskConfig) else load_task(path_or_task)
    splits = load_splits(task)
    corpus = load_corpus(task)
    warnings = []
    leak = splits.stats["leakage"]["train_eval_duplicates"]
    if leak:
        warnings.append(f"{leak} eval records also appear in train (leakage); scores will be optimistic")
    return CheckedTask(task=task, splits=splits, corpus=corpus, warnings=warnings)
