"""Reinforcement fine-tuning with TRL's GRPOTrainer: the task's metric as grader, or a learned reward.

``grpo`` samples ``num_generations`` answers per train prompt (temperature 1.0, at most the task's
``max_new_tokens``) and rewards each with the task's own metric against the record's reference,
the same function that scores every candidate on the held-out split; a metric with a
``format_check`` (accuracy, json) adds ``format_weight`` × 1 for an answer in the right form.
``sft+grpo`` spends half the steps on SFT first and the rest on GRPO on the same adapter: the
warm start ("RFT after SFT") that gives GRPO answers with some reward to compare. ``rlhf`` first
trains a reward model on the preference pairs (``training.reward_model``, once per worker), then
runs GRPO against it.

>>> from foundation.config import TaskConfig
>>> task = TaskConfig(name="t", data={"train": "a.jsonl", "eval": "b.jsonl"}, metric={"name": "exact_match"})
>>> metric_rewards(task, ["Paris.", [{"role": "assistant", "content": "Rome"}]], ["paris", "paris"])
[1.0, 0.0]
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace

from foundation.errors import AdviseError
from foundation.generation import task_messages
from foundation.metrics import METRICS, metric_options
from training import reward_model
from training.objectives import TrainingJob, needs_kind, register_objective
from training.preference import stage_summary
from training.space import Hyperparameter
from training.training import (TrainResult, TrainSettings, apply_adapter, count_parameters, plan_steps, prepare_device,
                            run_trainer, step_callbacks, train_sft, trainer_args)

TEMPERATURE = 1.0  # rollouts sample from the policy as it is; the group's spread is the learning signal
CUDA_SKIP = ("train_sampling_strategy", "use_liger_kernel")  # GRPO samples its own groups; no Liger GRPO loss here
GRADER_REASON = ("needs a metric that grades an answer against its reference "
                 "(exact_match, contains, accuracy, json, token_f1, rouge_l)")


def completion_text(completion) -> str:
    """A completion as TRL hands it over: text, or a conversational list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content", "")) for m in completion if m.get("role", "assistant") == "assistant")


def metric_rewards(task, completions: list, references: list[str]) -> list[float]:
    """The task's metric of each completion against its reference: the score a candidate gets."""
    metric = METRICS[task.metric.name]
    return metric.score_all([completion_text(c) for c in completions], list(references), metric_options(task.metric))


def format_rewards(task, completions: list) -> list[float]:
    """1 for an answer in the metric's expected form (a label it names, a JSON object), else 0."""
    metric = METRICS[task.metric.name]
    options = {k: v for k, v in metric_options(task.metric).items() if v is not None}
    return [float(bool(metric.format_check(completion_text(c), **options))) for c in completions]


def grader_rewards(task, format_weight: float) -> tuple[list, list[float]]:
    """(reward functions, their weights) for GRPOTrainer; the reference arrives as a dataset column."""
    def metric_reward(completions, reference, **_):
        return metric_rewards(task, completions, reference)

    def format_reward(completions, **_):
        return format_rewards(task, completions)

    metric_reward.__name__ = task.metric.name  # TRL logs rewards/<name>/mean
    funcs, weights = [metric_reward], [1.0]
    if format_weight > 0 and METRICS[task.metric.name].format_check is not None:
        format_reward.__name__ = "format"
        funcs.append(format_reward)
        weights.append(float(format_weight))
    return funcs, weights


def generation_batch(batch_size: int, grad_accum: int, num_generations: int) -> tuple[int, int]:
    """(micro-batch, accumulation) of completions per step: the effective batch rounded up to whole
    groups of ``num_generations`` (TRL requires it), the micro-batch no larger than asked.

    >>> generation_batch(8, 1, 4), generation_batch(6, 1, 4), generation_batch(3, 1, 4)
    ((8, 1), (4, 2), (2, 2))
    """
    total = max(1, math.ceil(batch_size * grad_accum / num_generations)) * num_generations
    micro = max(d for d in range(1, min(batch_size, total) + 1) if total % d == 0)
    return micro, total // micro


def messages_of(job: TrainingJob):
    return job.messages_for or (lambda r: task_messages(job.prompt, r))


def rollout_dataset(job: TrainingJob, max_completion: int):
    """Conversational prompts with their reference; records whose prompt leaves no room for an
    answer within ``max_seq_length`` and undesirable (KTO ``label: false``) answers are left out."""
    from datasets import Dataset

    messages, rows = messages_of(job), []
    for r in job.records:
        prompt = messages(r)
        ids = job.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
        if r.label is not False and len(ids["input_ids"]) + max_completion <= job.settings.max_seq_length:
            rows.append({"prompt": prompt, "reference": r.output})
    if not rows:
        raise AdviseError(f"none of the {len(job.records)} training prompts leaves room for a {max_completion}-token "
                          f"answer within {job.settings.max_seq_length} tokens; raise max_seq_length")
    return Dataset.from_list(rows)


def train_grpo(job: TrainingJob, *, reward_funcs=None, reward_weights=None, reward_tokenizers=None,
               callbacks=None, stage: str = "grpo") -> TrainResult:
    """One GRPO run of ``job.model`` (+ ``job.adapter``) on the job's prompts: graded by the task's
    metric unless ``reward_funcs`` are given (a reward model, with its tokenizer)."""
    from trl import GRPOConfig, GRPOTrainer

    setup_start, settings, params = time.perf_counter(), job.settings, job.params
    generations = int(params.get("num_generations", 4))
    max_completion = job.task.generation.max_new_tokens
    if reward_funcs is None:
        reward_funcs, reward_weights = grader_rewards(job.task, float(params.get("format_weight", 0.0)))
    dataset = rollout_dataset(job, max_completion)
    model = apply_adapter(job.model, job.adapter, job.device)
    counts = count_parameters(model)
    prepare_device(model, settings, job.device)
    micro, accum = generation_batch(settings.batch_size, settings.grad_accum, generations)
    steps = plan_steps(len(dataset), replace(settings, batch_size=micro * accum // generations, grad_accum=1))
    args = trainer_args(GRPOConfig, replace(settings, batch_size=micro, grad_accum=accum), steps, job.device,
                        cuda_skip=CUDA_SKIP, num_generations=generations, temperature=TEMPERATURE,
                        beta=float(params.get("beta", 0.0)), max_completion_length=max_completion,
                        reward_weights=reward_weights, log_completions=False)
    cbs, time_limit = step_callbacks(job.callbacks if callbacks is None else callbacks, settings, job.on_step)
    with kl_reference(model, args.beta):
        trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                              processing_class=job.tokenizer, reward_processing_classes=reward_tokenizers,
                              callbacks=cbs)
    result = run_trainer(trainer, job.tokenizer, n_records=len(job.records), settings=settings, steps=steps,
                         time_limit=time_limit, counts=counts, setup_start=setup_start)
    if "ref" in getattr(result.model, "peft_config", {}):  # TRL's frozen copy for the KL: not part of the result
        result.model.delete_adapter("ref")
    result.details = {"stages": [stage_summary(stage, result)], **rollout_details(result.log_history),
                      "num_generations": generations, "prompts_per_step": micro * accum // generations,
                      "beta": args.beta}
    return result


@contextmanager
def kl_reference(model, beta: float):
    """While GRPOTrainer is built: its frozen KL reference must be the policy as it starts. TRL adds
    a second adapter with the policy's config (an init that rewrites the base weights, PiSSA or
    OLoRA, must not run twice) or, for full fine-tuning, reloads the model from its config's
    folder (the tiny model has none, and after SFT the start is not the base): save it there."""
    config = getattr(model, "peft_config", {}).get("default") if beta else None
    if beta and config is None:
        folder, saved = tempfile.mkdtemp(prefix="advise-ref-"), model.config._name_or_path
        model.save_pretrained(folder)
        model.config._name_or_path = folder
        try:
            yield
        finally:
            model.config._name_or_path = saved
            shutil.rmtree(folder, ignore_errors=True)
    elif hasattr(config, "init_lora_weights"):
        saved, config.init_lora_weights = config.init_lora_weights, True
        try:
            yield
        finally:
            config.init_lora_weights = saved
    else:
        yield


def rollout_details(history: list[dict]) -> dict:
    """Mean reward (weighted sum) and each function's mean at the first and the last logged step."""
    logged = [h for h in history if "reward" in h]
    if not logged:
        return {}
    out = {"reward_first": logged[0]["reward"], "reward_last": logged[-1]["reward"]}
    for key in sorted({k for h in logged for k in h if k.startswith("rewards/") and k.endswith("/mean")}):
        name = key.split("/")[1]
        out[f"reward_{name}_first"], out[f"reward_{name}_last"] = logged[0].get(key), logged[-1].get(key)
    return out


def halves(settings: TrainSettings) -> tuple[TrainSettings, TrainSettings]:
    """The settings of two stages that share one run's steps and time budget (the second's budget
    is set once the first has run, see :func:`second_budget`)."""
    first = max(1, settings.max_steps // 2)
    budget = settings.time_budget_s
    return (replace(settings, max_steps=first, time_budget_s=budget / 2 if budget else None),
            replace(settings, max_steps=max(1, settings.max_steps - first)))


def second_budget(settings: TrainSettings, first: TrainResult) -> float | None:
    if not settings.time_budget_s:
        return None
    return max(settings.time_budget_s - first.train_seconds - first.setup_seconds, settings.time_budget_s / 4)


def counting_on(job: TrainingJob, done: int, total: int):
    """``job.on_step`` for a later stage: steps counted on from the earlier stages, out of ``total``."""
    return job.on_step and (lambda step, of: job.on_step(done + step, total))


def combine(first: TrainResult, second: TrainResult, first_name: str, second_name: str) -> TrainResult:
    """Two stages on one model as one result: the second's model, loss and stop, both stages' cost;
    each logged step says its stage."""
    stages = [stage_summary(first_name, first), *second.details.get("stages", [stage_summary(second_name, second)])]
    history = ([{**h, "stage": first_name} for h in first.log_history]
               + [{**h, "stage": second_name} for h in second.log_history])
    return replace(second, steps=first.steps + second.steps, train_seconds=first.train_seconds + second.train_seconds,
                   tokens_seen=first.tokens_seen + second.tokens_seen, trainable_params=first.trainable_params,
                   total_params=first.total_params, log_history=history,
                   setup_seconds=first.setup_seconds + second.setup_seconds,
                   details={**second.details, "stages": stages})


def train_sft_then_grpo(job: TrainingJob) -> TrainResult:
    """SFT on the reference (or desirable) answers for half the steps and half the time, then GRPO on
    the same adapter. ``job.callbacks`` see both stages, as they do every objective's."""
    sft_settings, grpo_settings = halves(job.settings)
    records = [r for r in job.records if r.label is not False]
    total = plan_steps(len(records), sft_settings) + grpo_settings.max_steps
    first = train_sft(job.model, job.tokenizer, records, prompt=job.prompt, settings=sft_settings, adapter=job.adapter,
                      callbacks=job.callbacks, device=job.device, on_step=counting_on(job, 0, total),
                      messages_for=job.messages_for)
    grpo_settings.time_budget_s = second_budget(job.settings, first)
    second = train_grpo(replace(job, model=first.model, adapter=None, settings=grpo_settings,
                                on_step=counting_on(job, first.steps, total)))
    return combine(first, second, "sft", "grpo")


def train_rlhf(job: TrainingJob) -> TrainResult:
    """A reward model on the train pairs (trained once per worker, kept in ``job.cache``), then
    GRPO of the policy against it."""
    rm = reward_model.cached_reward_model(job)
    settings = replace(job.settings)
    if settings.time_budget_s and rm.trained_now:
        settings.time_budget_s = max(settings.time_budget_s - rm.train_seconds, settings.time_budget_s / 2)
    result = train_grpo(replace(job, settings=settings), reward_funcs=[rm.model], reward_weights=[1.0],
                        reward_tokenizers=[rm.tokenizer])
    result.details["stages"] = [rm.stage(), *result.details["stages"]]
    result.details["reward_model"] = rm.summary()
    return result


GRPO_HYPERPARAMETERS = (
    Hyperparameter("num_generations", "categorical", choices=(2, 4),
                   help="answers sampled per prompt; their rewards are compared within the group"),
    Hyperparameter("beta", "float", 0.0, 0.1, limits=(0, 10), help="KL coefficient towards the starting model"),
)
FORMAT_WEIGHT = Hyperparameter("format_weight", "categorical", choices=(0.0, 0.2),
                               help="weight of the format reward (1 for an answer in the metric's form)")


def needs_grader(facts) -> tuple[bool, str]:
    """GRPO grades sampled answers with the metric, and samples them after each training prompt."""
    if not facts.grader:
        return False, GRADER_REASON
    if facts.with_room == 0:
        return False, ("no training prompt leaves room for a generation.max_new_tokens answer within "
                       "tune.max_seq_length (raise it, or lower generation.max_new_tokens)")
    return True, ""


register_objective("grpo", label="GRPO (RFT with the metric as grader)", train=train_grpo, default=False,
                   hyperparameters=GRPO_HYPERPARAMETERS + (FORMAT_WEIGHT,), applies=needs_grader,
                   description="reinforcement fine-tuning: sampled answers rewarded by the task's metric (TRL GRPO)")
register_objective("sft+grpo", label="SFT, then GRPO", train=train_sft_then_grpo, default=False,
                   hyperparameters=GRPO_HYPERPARAMETERS + (FORMAT_WEIGHT,), applies=needs_grader,
                   stages=("sft", "grpo"),
                   description="RFT after SFT: half the steps on the reference answers, then GRPO on the same adapter")
register_objective("rlhf", label="RLHF (reward model, then GRPO)", train=train_rlhf, default=False,
                   hyperparameters=GRPO_HYPERPARAMETERS,
                   stages=("reward model", "rlhf"),  # training.curve continues a pilot with the last one
                   applies=needs_kind("preference", what="paired preference data (prompt, chosen, rejected)"),
                   description="a reward model trained on the preference pairs, then GRPO against it")
