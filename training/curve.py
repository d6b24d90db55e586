"""The pilot's learning curve: validation quality at a few points during training, and more
training while the curve still rises beyond noise.

A pilot is a short, fixed run, and the verdict rests on it. So it scores the validation split
(at most ``curve_records`` of it; on a CPU in one batch, so decoding runs once for all of them:
bench/results/curve.json) at a third, two thirds and the end of its steps. Training goes on in
rounds of half the pilot's steps (same settings, the learning-rate schedule starting again), up
to ``baselines.finetune.max_extensions`` rounds, only when quality rose over the last third by more than ``verdict.min_gain`` *and* by more than noise: the same validation
examples are compared before and after, and the examples that got better must outnumber those
that got worse by a one-sided sign test at ``NOISE_P`` (so one or two examples flipping never
extend a run). A curve still rising when the pilot stopped is reported: the verdict then says a
longer run may change it. A pilot that its time budget stopped before its planned steps says so.

>>> rising([(10, 0.2), (20, 0.3), (30, 0.5)], min_gain=0.02)
True
>>> rising([(10, 0.2), (20, 0.5), (30, 0.5)], min_gain=0.02)
False
>>> sign_test_p(1, 0), sign_test_p(3, 0) <= NOISE_P
(0.5, True)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

CURVE_POINTS = 3  # validation scores during the planned steps: at 1/3, 2/3 and the end
NOISE_P = 0.2  # one-sided sign test: a rise this likely under "no change" is noise (3-0 passes, 2-0 does not)


def checkpoints(steps: int, points: int = CURVE_POINTS) -> list[int]:
    """The steps of a run of ``steps`` at which the curve is scored.

    >>> checkpoints(60)
    [20, 40, 60]
    >>> checkpoints(2)
    [1, 2]
    """
    return sorted({max(1, round(steps * (i + 1) / points)) for i in range(points)})


def _reference(curve: list[tuple[int, float]]) -> int:
    """Index of the point the last one is compared with: the last at or before two thirds of the
    steps scored so far (the one before the last when there are only two)."""
    if len(curve) <= 2:
        return len(curve) - 2
    cut = curve[0][0] + (curve[-1][0] - curve[0][0]) * 2 / 3
    return max(i for i, (s, _) in enumerate(curve[:-1]) if s <= cut)


def sign_test_p(better: int, worse: int) -> float:
    """One-sided sign test: the chance of at least ``better`` of ``better + worse`` changed
    examples going up when up and down are equally likely."""
    n = better + worse
    return sum(math.comb(n, k) for k in range(better, n + 1)) / 2 ** n if n else 1.0


def changed(before: list[float], after: list[float]) -> tuple[int, int]:
    """Validation examples that scored better and worse (paired by position)."""
    return (sum(a > b + 1e-9 for b, a in zip(before, after)), sum(a < b - 1e-9 for b, a in zip(before, after)))


def rising(curve: list[tuple[int, float]], min_gain: float, scores: list[list[float]] | None = None) -> bool:
    """Did quality rise by more than ``min_gain`` over the last third of the steps scored so far,
    and (given each point's per-example ``scores``) by more than noise (:data:`NOISE_P`)?"""
    if len(curve) < 2:
        return False
    ref = _reference(curve)
    if curve[-1][1] - curve[ref][1] <= min_gain:
        return False
    if scores is None or len(scores) != len(curve):
        return True
    return sign_test_p(*changed(scores[ref], scores[-1])) <= NOISE_P


@dataclass
class LearningCurve:
    """Validation quality by step; ``callback(points)`` records it from inside the trainer."""

    evaluate: object  # model -> per-example validation scores (training.evaluate.Evaluator.scores)
    points: list[tuple[int, float]] = field(default_factory=list)  # (step, mean score)
    eval_seconds: float = 0.0
    extended_steps: int = 0
    stopped: str = ""
    scores: list[list[float]] = field(default_factory=list)  # per-example scores of each point
    cut_short: str = ""  # the planned steps were not all trained: why, and how many were

    outside_seconds: float = 0.0  # of eval_seconds, those spent after training (not in its clock)

    def score(self, step: int, model, in_training: bool = True) -> None:
        """Score ``model`` at ``step``: the metric on every validation example."""
        t0 = time.perf_counter()
        scores = self.evaluate(model)
        scores = [float(scores)] if isinstance(scores, (int, float)) else [float(v) for v in scores]
        self.points.append((step, sum(scores) / max(1, len(scores))))
        self.scores.append(scores)
        self.eval_seconds += time.perf_counter() - t0
        if not in_training:
            self.outside_seconds += time.perf_counter() - t0

    def rising(self, min_gain: float) -> bool:
        return rising(self.points, min_gain, self.scores if all(len(s) > 1 for s in self.scores) else None)

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
                    curve.score(offset + self.done, model)

        return ScoreValidation()

    def to_dict(self, min_gain: float) -> dict:
        out = {"steps": [s for s, _ in self.points], "validation": [v for _, v in self.points],
               "still_improving": self.rising(min_gain), "extended_steps": self.extended_steps,
               "stopped": self.stopped, "cut_short": self.cut_short, "eval_seconds": self.eval_seconds}
        if len(self.points) >= 2 and all(len(s) > 1 for s in self.scores):
            better, worse = changed(self.scores[_reference(self.points)], self.scores[-1])
            out["last_third"] = {"better": better, "worse": worse, "p": sign_test_p(better, worse)}
        return out


def extend_while_rising(trained, kit, curve: LearningCurve, *, min_gain: float, max_extensions: int,
                        time_budget_s: float | None):
    """Train ``trained`` (a ``training.trial.TrainedModel``) on in rounds of half its steps while the
    curve rises and the budget allows; returns the last round's TrainResult merged into the first."""
    from training.objectives import OBJECTIVES, TrainingJob

    result = trained.result
    round_steps = max(1, trained.planned_steps // 2)
    objective = OBJECTIVES[OBJECTIVES[trained.config.objective].stages[-1]]  # go on with the last stage
    for n in range(max_extensions + 1):
        if curve.cut_short:
            curve.stopped = curve.cut_short
            return result
        if not curve.rising(min_gain):
            curve.stopped = ("the curve flattened" if n else
                             "the curve was flat (or rose within noise) at the end of the planned steps")
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
        if more.steps < round_steps:  # the time budget (the safety net) ended the round
            curve.stopped = f"an extra round was cut short after {more.steps} of {round_steps} steps ({more.stopped_reason})"
            return result
    return result


def _merged(first, more):
    """One TrainResult for a run and its continuation."""
    return replace(more, steps=first.steps + more.steps, train_seconds=first.train_seconds + more.train_seconds,
                   tokens_seen=first.tokens_seen + more.tokens_seen, log_history=first.log_history + more.log_history,
                   setup_seconds=first.setup_seconds + more.setup_seconds,
                   details={**first.details, **more.details})
