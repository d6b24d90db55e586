"""The baseline interface and its registry.

A baseline is one function: given the run context (task, splits, loaded model), return the
measured candidates. Adding one is a module with ``@register_baseline("name")`` plus a test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from advisor.progress import QUIET, Progress
from advisor.results import CandidateResult


@dataclass
class RunContext:
    task: Any  # TaskConfig
    splits: Any  # advisor.data.Splits
    corpus: list
    model: Any
    tokenizer: Any
    device: str
    run_dir: Path
    progress: Progress = QUIET
    extras: dict = field(default_factory=dict)  # results a later stage needs (e.g. the pilot config)
    _embedder: Any = None

    @property
    def embedder(self):
        """Loaded on first use: only RAG and the embedding metric need it."""
        if self._embedder is None:
            from advisor.models import load_embedder, resolve_embedder

            self._embedder = load_embedder(resolve_embedder(self.task.embedder, self.task.base_dir), "cpu")
        return self._embedder


BaselineFn = Callable[[RunContext], list[CandidateResult]]
BASELINES: dict[str, BaselineFn] = {}
ORDER = ("prompt", "rag", "finetune")


def register_baseline(name: str):
    def wrap(fn: BaselineFn) -> BaselineFn:
        if name in BASELINES:
            raise ValueError(f"baseline {name!r} is already registered")
        BASELINES[name] = fn
        return fn

    return wrap


def load_all() -> dict[str, BaselineFn]:
    """Import the built-in baselines so they register themselves."""
    from baselines import finetune, prompt, rag  # noqa: F401

    return BASELINES
