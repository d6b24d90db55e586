"""Training objectives, one ``register_objective`` call each: what a trial (or the pilot) optimises.

The objective is a search dimension beside the PEFT method: ``sft`` for input → output records,
the preference objectives (``dpo``, ``kto``, ``orpo``, ``simpo``) for preference data, ``grpo``
(reinforcement fine-tuning with the task's metric as grader), ``rlhf`` (a learned reward model,
then RL against it) and ``cpt+sft`` (continued pre-training on the corpus, then SFT). An entry
says which data it needs (``applies``), its own hyperparameters (searched as
``<objective>.<name>`` beside the method's), and how to train (``train``: a
:class:`TrainingJob` → ``training.training.TrainResult``). Every candidate is still measured on the
same held-out split, so the verdict rule stays one rule.

Adding an objective is one ``register_objective(...)`` in the module that trains it, imported by
``tuner/__init__.py`` (so any import of the tuner registers every objective), plus its row in the
parametrised tests.

>>> OBJECTIVES["sft"].applies(ObjectiveFacts(data_kind="sft"))
(True, '')
>>> OBJECTIVES["dpo"].applies(ObjectiveFacts(data_kind="sft"))[1]
'needs paired preference data (prompt, chosen, rejected)'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from training.space import Hyperparameter

DATA_KINDS = ("sft", "preference", "unpaired")  # foundation.records.data_kind


@dataclass(frozen=True)
class ObjectiveFacts:
    """What decides whether an objective can train on a task."""

    data_kind: str = "sft"  # sft (input → output), preference (chosen/rejected pairs), unpaired (KTO labels)
    has_corpus: bool = False
    grader: str | None = None  # the task's metric when it can grade an answer against a reference (GRPO)
    desirable: int | None = None  # train records with a desirable answer (not ``label: false``); None: not counted
    with_room: int | None = None  # train prompts leaving room for an answer within the training length; None: not measured

    @classmethod
    def of(cls, task, kind: str, corpus, records=None, with_room: int | None = None) -> "ObjectiveFacts":
        from foundation.metrics import METRICS

        metric = METRICS[task.metric.name]
        desirable = None if records is None else sum(r.label is not False for r in records)
        return cls(data_kind=kind, has_corpus=bool(corpus), grader=metric.name if metric.grades else None,
                   desirable=desirable, with_room=with_room)


@dataclass
class TrainingJob:
    """What an objective's ``train`` gets: one base model (not yet adapted) and what to train it on."""

    model: Any
    tokenizer: Any
    records: list  # foundation.records.Record: the train split (chosen answer in .output, .rejected, .label)
    prompt: Any  # the task's PromptConfig: foundation.generation.task_messages(prompt, record)
    settings: Any  # training.training.TrainSettings: steps, batch, learning rate, length, time budget
    adapter: Any = None  # a PeftConfig, a callable(model) -> model (BitFit, full), or None
    params: dict = field(default_factory=dict)  # the configuration's clean params (objective ones included)
    task: Any = None  # the TaskConfig: metric (graders), generation (rollout length)
    device: str = "cpu"
    callbacks: list = field(default_factory=list)  # TrainerCallbacks (pruning, learning curve): given to every stage
    on_step: Callable[[int, int], None] | None = None  # progress, called after every optimiser step
    corpus: list = field(default_factory=list)  # corpus chunk texts, for continued pre-training
    messages_for: Callable | None = None  # record -> prompt messages; default task_messages(prompt, record)
    validation: list = field(default_factory=list)  # held-out records (a reward model's pairwise accuracy)
    run_dir: Any = None  # the run folder (pathlib.Path), where shared artifacts such as a reward model are saved
    cache: dict = field(default_factory=dict)  # per worker, kept across trials (e.g. a trained reward model)


def _always(facts: ObjectiveFacts) -> tuple[bool, str]:
    return True, ""


@dataclass(frozen=True)
class Objective:
    name: str
    label: str  # a reader's name: "DPO (direct preference optimisation)"
    description: str
    train: Callable[[TrainingJob], Any]  # -> training.training.TrainResult
    hyperparameters: tuple[Hyperparameter, ...] = ()
    applies: Callable[[ObjectiveFacts], tuple[bool, str]] = _always
    default: bool = True  # searched by default when it applies; False: opt-in through tune.objectives
    stages: tuple[str, ...] = ()  # what runs, in order, for the report: ("sft", "dpo")


OBJECTIVES: dict[str, Objective] = {}


def register_objective(name: str, *, label: str, description: str, train, hyperparameters=(), applies=_always,
                       default: bool = True, stages: tuple[str, ...] = ()) -> Objective:
    """Add an objective to ``OBJECTIVES``; checks the name and its hyperparameters once, here."""
    if name in OBJECTIVES:
        raise ValueError(f"objective {name!r} is already registered")
    if not name or "." in name or not all(ch.isalnum() or ch in "_+" for ch in name):
        raise ValueError(f"objective name {name!r}: letters, digits, '_' and '+' only")
    if not callable(train):
        raise ValueError(f"objective {name!r}: train must be callable")
    names = [hp.name for hp in hyperparameters]
    if len(set(names)) != len(names):
        raise ValueError(f"objective {name!r}: a hyperparameter is given twice")
    objective = Objective(name, label, description, train, tuple(hyperparameters), applies, default,
                          tuple(stages) or (name,))
    OBJECTIVES[name] = objective
    return objective


def needs_kind(*kinds: str, what: str):
    """An ``applies`` check: the data must be one of ``kinds``."""
    def applies(facts: ObjectiveFacts) -> tuple[bool, str]:
        return (True, "") if facts.data_kind in kinds else (False, f"needs {what}")

    return applies


def needs_desirable(facts: ObjectiveFacts) -> tuple[bool, str]:
    """An ``applies`` check: at least one train record has a desirable answer (KTO weighs the
    desirable against the undesirable ones; SFT first trains on them)."""
    if facts.desirable == 0:
        return False, "needs at least one desirable answer in train (every label is false)"
    return True, ""


def all_of(*checks):
    """An ``applies`` check passing when every one of ``checks`` does (the first reason otherwise)."""
    def applies(facts: ObjectiveFacts) -> tuple[bool, str]:
        for check in checks:
            ok, why = check(facts)
            if not ok:
                return ok, why
        return True, ""

    return applies


def applicable(requested: list[str] | None, facts: ObjectiveFacts) -> tuple[list[Objective], dict[str, str]]:
    """The objectives to search and why each other one is left out.

    ``requested`` is ``tune.objectives``; unset, every default objective that applies."""
    chosen, excluded = [], {}
    for name, objective in OBJECTIVES.items():
        ok, why = objective.applies(facts)
        wanted = objective.default if requested is None else name in requested
        if not ok:
            excluded[name] = why
        elif not wanted:
            excluded[name] = "opt-in: add it to tune.objectives" if requested is None else "not in tune.objectives"
        else:
            chosen.append(objective)
    return chosen, excluded


def check_objectives(names: list[str] | None) -> str | None:
    """Why ``tune.objectives`` names something unknown, or None."""
    for i, name in enumerate(names or ()):
        if name not in OBJECTIVES:
            return f"{i}: unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}"
    return None


def _train_sft(job: TrainingJob):
    from training.training import train_sft

    return train_sft(job.model, job.tokenizer, job.records, prompt=job.prompt, settings=job.settings,
                     adapter=job.adapter, callbacks=job.callbacks, device=job.device, on_step=job.on_step,
                     messages_for=job.messages_for)


register_objective("sft", label="SFT", train=_train_sft,
                   description="supervised fine-tuning: loss on the reference (or chosen) answer's tokens")

