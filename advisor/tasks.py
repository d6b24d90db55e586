"""Loading a task for a command: the file and its sections (``foundation.taskfile``), then the
checks only a stage can make (which PEFT methods and hyperparameters the tuner knows)."""
from __future__ import annotations

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
