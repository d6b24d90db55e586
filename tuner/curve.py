"""The pilot's learning curve: validation quality at a few points during training, and more
training while the curve still rises.

A pilot is a short, fixed run, and the verdict rests on it. So it scores the validation split
(at most ``curve_records`` of it, one batched generation each time) at a third, two thirds and
the end of its steps. If quality rose by more than ``verdict.min_gain`` over the last third,
training goes on in rounds of half the pilot's steps (same settings, the learning-rate schedule
starting again), up to ``baselines.finetune.max_extensions`` rounds and while the pilot's time
budget allows another round. A curve that was still rising when the pilot stopped is reported:
the verdict then says a longer run may change it.

>>> rising([(10, 0.2), (20, 0.3), (30, 0.5)], min_gain=0.02)
True
>>> rising([(10, 0.2), (20, 0.5), (30, 0.5)], min_gain=0.02)
False
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

CURVE_POINTS = 3  # validation scores during the planned steps: at 1/3, 2/3 and the end


def checkpoints(steps: int, points: int = CURVE_POINTS) -> list[int]:
    """The steps of a run of ``steps`` at which the curve is scored.

    >>> checkpoints(60)
    [20, 40, 60]
    >>> checkpoints(2)
    [1, 2]
    """
    return sorted({max(1, round(steps * (i + 1) / points)) for i in range(points)})


def rising(curve: list[tuple[int, float]], min_gain: float) -> bool:
    """Did quality rise by more than ``min_gain`` over the last third of the steps scored so far?"""
    if len(curve) < 2:
        return False
    last_step, last = curve[-1]
    cut = curve[0][0] + (last_step - curve[0][0]) * 2 / 3 if len(curve) > 2 else curve[0][0]
    earlier = [v for s, v in curve if s <= cut] or [curve[-2][1]]
    return last - earlier[-1] > min_gain


@dataclass
class LearningCurve:
    """Validation quality by step; ``callback(points)`` records it from inside the trainer."""

    evaluate: object  # model -> mean validation quality (tuner.evaluate.Evaluator.mean)
    points: list[tuple[int, float]] = field(default_factory=list)
    eval_seconds: float = 0.0
    extended_steps: int = 0
    stopped: str = ""

    def callback(self, steps: list[int], offset: int = 0):
        """A TrainerCallback scoring validation after each of ``steps`` (optimiser steps of this
        run, every stage counted), recorded as ``offset + step`` (a continuation counts on)."""
        from transformers import TrainerCallback

        curve, wanted = self, set(steps)

        class ScoreValidation(TrainerCallback):
            # Steps are counted here, not read from the trainer: an objective of two stages
            # (SFT, then DPO) runs two trainers, each counting from 0.
            done = 0

            def on_step_end(self, args, state, control, model=None, **kw):
                self.done += 1
                if self.done in wanted:
                    t0 = time.perf_counter()
                    curve.points.append((offset + self.done, float(curve.evaluate(model))))
                    curve.eval_seconds += time.perf_counter() - t0

        return ScoreValidation()

    def to_dict(self, min_gain: float) -> dict:
        return {"steps": [s for s, _ in self.points], "validation": [v for _, v in self.points],
                "still_improving": rising(self.points, min_gain), "extended_steps": self.extended_steps,
                "stopped": self.stopped}


def extend_while_rising(trained, kit, curve: LearningCurve, *, min_gain: float, max_extensions: int,
                        time_budget_s: float | None):
    """Train ``trained`` (a ``tuner.trial.TrainedModel``) on in rounds of half its steps while the
    curve rises and the budget allows; returns the last round's TrainResult merged into the first."""
    from tuner.objectives import OBJECTIVES, TrainingJob

    result = trained.result
    round_steps = max(1, trained.planned_steps // 2)
    objective = OBJECTIVES[OBJECTIVES[trained.config.objective].stages[-1]]  # go on with the last stage
    for n in range(max_extensions + 1):
        if not rising(curve.points, min_gain):
            curve.stopped = "the curve flattened" if n else "the curve was flat at the end of the planned steps"
            return result
        if n == max_extensions:
            curve.stopped = f"still rising after {max_extensions} extra round(s) (baselines.finetune.max_extensions)"
            return result
        per_step = result.train_seconds / max(1, result.steps)
        spent = result.train_seconds
        if time_budget_s is not None and spent + per_step * round_steps > time_budget_s:
            curve.stopped = "still rising, but another round would pass baselines.finetune.time_budget_s"
            return result
        settings = replace(trained.settings, max_steps=round_steps, time_budget_s=(
            None if time_budget_s is None else time_budget_s - spent))
        with kit.progress.task(f"Pilot: {round_steps} more steps (validation still rising)", total=round_steps) as advance:
            more = objective.train(TrainingJob(
                model=result.model, tokenizer=kit.tokenizer, records=kit.records, prompt=kit.task.prompt,
                settings=settings, adapter=None, params=trained.config.params, task=kit.task, device=kit.device,
                callbacks=[curve.callback(checkpoints(round_steps, 2), offset=result.steps)],
                on_step=lambda step, total: advance(), corpus=kit.corpus, messages_for=kit.messages_for,
                validation=kit.validation, run_dir=kit.run_dir, cache=kit.cache))
        curve.extended_steps += more.steps
        result = _merged(result, more)
    return result


def _merged(first, more):
    """One TrainResult for a run and its continuation."""
    return replace(more, steps=first.steps + more.steps, train_seconds=first.train_seconds + more.train_seconds,
                   tokens_seen=first.tokens_seen + more.tokens_seen, log_history=first.log_history + more.log_history,
                   setup_seconds=first.setup_seconds + more.setup_seconds,
                   details={**first.details, **more.details})
