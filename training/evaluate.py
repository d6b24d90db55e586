"""Validation during the search: generate with the task's prompt, score with the task's metric, and
report to the pruner from a ``TrainerCallback`` (pruning never copies the training loop)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from foundation.generation import generate, render_prompt, task_prompts, time_single_queries
from foundation.metrics import score_records
from foundation.records import is_preference


@dataclass
class Evaluator:
    """Generates for a split with the task's prompt and scores it with the task's metric; on
    preference data, scores the candidate's preference accuracy on the split's pairs instead
    (no generation needed)."""

    task: object
    tokenizer: object
    records: list
    embedder: object = None
    prompts: list = field(default_factory=list)
    messages_for: object = None  # record -> prompt messages, when not the task's own (FT + RAG)
    batch_size: int | None = None  # generation's batch (None: generation.batch_size)

    def __post_init__(self):
        if self.messages_for is None:
            self.prompts = task_prompts(self.tokenizer, self.task.prompt, self.records)
        else:
            self.prompts = [render_prompt(self.tokenizer, self.messages_for(r)) for r in self.records]

    def texts(self, model) -> list[str]:
        side = self.tokenizer.padding_side
        was_training = model.training
        model.eval()
        try:
            return generate(model, self.tokenizer, self.prompts, self.task.generation, batch_size=self.batch_size).texts
        finally:
            self.tokenizer.padding_side = side
            if was_training:
                model.train()

    def scores(self, model, texts: list[str] | None = None) -> list[float]:
        """Per-record quality; ``texts`` are the model's answers when already generated."""
        if is_preference(self.records):
            from foundation.likelihood import preference_scores

            return preference_scores(model, self.tokenizer, self.prompts, self.records)[0]
        texts = self.texts(model) if texts is None else texts
        return score_records(self.task, texts, self.records, self.embedder)

    def mean(self, model) -> float:
        return sum(self.scores(model)) / len(self.records)

    def latency_ms(self, model, n: int) -> list[float]:
        model.eval()
        return time_single_queries(
            lambda i: generate(model, self.tokenizer, [self.prompts[i]], self.task.generation, batch_size=1),
            list(range(len(self.prompts))), n)


def pruning_callback(trial, evaluate, eval_every: int, planned_steps: int | None = None):
    """A ``TrainerCallback`` reporting validation quality to ``trial`` every ``eval_every`` steps.

    It stops training when the pruner says so or when the loss (or gradient norm) stops being
    finite; the caller then raises ``optuna.TrialPruned`` with ``callback.reason``. Steps are
    counted by the callback over every stage of the objective (SFT then DPO are two trainers,
    each counting from 0); the last of ``planned_steps`` is scored by the caller.
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
                    # in a later stage the trainer counts from 0 again; the callback's own count goes on
                    self.reason = f"{key.replace('_', ' ')} became {value} at step {max(self.done, state.global_step)}"
                    control.should_training_stop = True

        done = 0

        def on_step_end(self, args, state, control, model=None, **kw):
            self.done += 1
            step = self.done
            if self.reason is not None or step % eval_every or step >= (planned_steps or state.max_steps):
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
