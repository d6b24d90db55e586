"""The baseline interface and its registry.

A baseline is one function: given the run context (task, splits, loaded model), return the
measured candidates. Its registry entry carries every fact the verdict and the reports need,
so adding a baseline is one module with one ``@register_baseline(...)``, a section of the same
name under ``baselines:`` in ``foundation.config.BaselinesConfig``, and a test:

    @register_baseline("prompt", order=0, kind="Prompt only", headline="Prompting is enough",
                       action="Ship the base model with a good prompt; ...")
    def run_prompt(ctx: RunContext) -> list[CandidateResult]: ...

``order`` is both the run order and the simplicity the verdict breaks ties with (lower is
simpler); ``fine_tuned`` marks the options the verdict treats as the last resort.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from foundation.progress import QUIET, Progress
from foundation.results import CandidateResult


@dataclass
class RunContext:
    task: Any  # TaskConfig
    splits: Any  # foundation.data.Splits
    corpus: list
    model: Any
    tokenizer: Any
    device: str
    run_dir: Path
    progress: Progress = QUIET
    extras: dict = field(default_factory=dict)  # what one baseline leaves for a later one (e.g. retrieval hits)
    repeat_of: dict = field(default_factory=dict)  # --seeds: the first seed's candidates, by name, to reuse
    output_dir: Path | None = None  # where predictions and adapters go (a seed's own folder); default run_dir
    _embedder: Any = None

    @property
    def out_dir(self) -> Path:
        return self.output_dir or self.run_dir

    def reusable(self, name: str):
        """The first seed's measurement of ``name`` when a repetition cannot change it (greedy
        decoding of a prompt that does not depend on the seed), else None."""
        return None if self.task.generation.do_sample else self.repeat_of.get(name)

    @property
    def embedder(self):
        """Loaded on first use: only RAG and the embedding metric need it."""
        if self._embedder is None:
            from foundation.models import load_embedder, resolve_embedder

            self._embedder = load_embedder(resolve_embedder(self.task.embedder, self.task.base_dir), "cpu")
        return self._embedder


BaselineFn = Callable[[RunContext], list[CandidateResult]]


@dataclass(frozen=True)
class Baseline:
    name: str
    run: BaselineFn
    order: int  # run order, and simplicity when the verdict breaks a tie (lower = simpler)
    kind: str  # a reader's name for the option: "Retrieval (RAG)"
    headline: str  # how the verdict's headline starts when it wins: "Use retrieval (RAG)"
    action: str  # what to ship, in one sentence for a manager
    fine_tuned: bool = False  # trains weights: the verdict's last resort
    needs: tuple[str, ...] = ()  # baselines that must run too (FT + RAG needs rag's retriever and the pilot's settings)
    when: Callable[[Any], bool] | None = None  # enabled by another part of the task (compare:) than baselines.<name>

    def enabled(self, task) -> bool:
        if self.when is not None:
            return self.when(task)
        return all(getattr(task.baselines, name).enabled for name in (self.name, *self.needs))


BASELINES: dict[str, Baseline] = {}


def register_baseline(name: str, *, order: int, kind: str, headline: str, action: str, fine_tuned: bool = False,
                      needs: tuple[str, ...] = (), when: Callable[[Any], bool] | None = None):
    """Decorator adding a baseline to ``BASELINES``; names and orders must be unique."""

    def wrap(fn: BaselineFn) -> BaselineFn:
        if name in BASELINES:
            raise ValueError(f"baseline {name!r} is already registered")
        if any(b.order == order for b in BASELINES.values()):
            raise ValueError(f"baseline {name!r}: order {order} is taken")
        if any(BASELINES.get(n) is None or BASELINES[n].order >= order for n in needs):
            raise ValueError(f"baseline {name!r}: what it needs ({', '.join(needs)}) must be registered and run before it")
        BASELINES[name] = Baseline(name, fn, order, kind, headline, action, fine_tuned, tuple(needs), when)
        return fn

    return wrap


def load_all() -> dict[str, Baseline]:
    """Every registered baseline, in run order (simplest first). The package's ``__init__`` imports
    the built-in ones, so they are registered before anyone can import this module."""
    return dict(sorted(BASELINES.items(), key=lambda kv: kv[1].order))


def baseline_of(candidate: CandidateResult) -> Baseline | None:
    """The registry entry that measured ``candidate`` (None for a name this version does not know)."""
    return load_all().get(candidate.baseline)


def simplicity(candidate: CandidateResult) -> int:
    entry = baseline_of(candidate)
    return entry.order if entry is not None else len(BASELINES)


def is_fine_tuned(candidate: CandidateResult) -> bool:
    entry = baseline_of(candidate)
    return entry.fine_tuned if entry is not None else candidate.config is not None
