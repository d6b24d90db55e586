"""Validation during the search: generate with the task's prompt, score with the task's metric, and
report to the pruner from a ``TrainerCallback`` (pruning never copies the training loop)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from foundation.generation import generate, task_prompts, time_single_queries
from foundation.metrics import score


@dataclass
class Evaluator:
    """Generates for a split with the task's prompt and scores it with the task's metric."""

    task: object
    tokenizer: object
    records: list
    embedder: object = None
    prompts: list = field(default_factory=list)

    def __post_init__(self):
        self.prompts = task_prompts(self.tokenizer, self.task.prompt, self.records)

    def texts(self, model) -> list[str]:
        side = self.tokenizer.padding_side
        was_training = model.training
        model.eval()
        try:
            return generate(model, self.tokenizer, self.prompts, self.task.generation).texts
        finally:
            self.tokenizer.padding_side = side
            if was_training:
                model.train()

    def scores(self, model) -> list[float]:
        return score(self.task, self.texts(model), [r.output for r in self.records], self.embedder)

    def mean(self, model) -> float:
        return sum(self.scores(model)) / len(self.records)

    def latency_ms(self, model, n: int) -> list[float]:
        model.eval()
        return time_single_queries(
            lambda i: generate(model, self.tokenizer, [self.prompts[i]], self.task.generation, batch_size=1),
            list(range(len(self.prompts))), n)


def pruning_callback(trial, evaluate, eval_every: int):
    """A ``TrainerCallback`` reporting validation quality to ``trial`` every ``eval_every`` steps.

    It stops training when the pruner says so or when the loss (or gradient norm) stops being
    finite; the caller then raises ``optuna.TrialPruned`` with ``callback.reason``.
    """
    from transformers import TrainerCallback

    class ReportToTrial(TrainerCallback):
        def __init__(self):
            self.reason: str | None = None
            self.intermediate: dict[int, float] = {}
            self.eval_seconds = 0.0

        def on_log(self, args, state, control, logs=None, **kw):
            for key in ("loss", "grad_norm"):
                value = (logs or {}).get(key)
                if value is not None and not math.isfinite(value) and self.reason is None:
                    self.reason = f"{key.replace('_', ' ')} became {value} at step {state.global_step}"
                    control.should_training_stop = True

        def on_step_end(self, args, state, control, model=None, **kw):
            step = state.global_step
            if self.reason is not None or step % eval_every or step >= state.max_steps:
                return  # the last step is scored by the caller, with per-example scores
            t0 = time.perf_counter()
            value = evaluate(model)
            self.eval_seconds += time.perf_counter() - t0
            self.intermediate[step] = value
            trial.report(value, step)
            if trial.should_prune():
                self.reason = f"pruned at step {step}: validation quality {value:.3f} is behind other trials"
                control.should_training_stop = True

    return ReportToTrial()
