"""A learned reward for RLHF: the base model with a scalar head, trained on preference pairs.

The reward model is the task's base weights as ``AutoModelForSequenceClassification``
(``num_labels=1``) with LoRA and the score head trainable, trained by TRL's RewardTrainer
(Bradley-Terry loss: the chosen answer must score above the rejected one). Its pairwise accuracy
on held-out pairs says how far the policy can trust it. It is trained once per worker (at a fixed
learning rate, for the trial's steps but at least one pass over the pairs, in half the trial's
time budget) and kept in ``TrainingJob.cache``; with a run folder it is saved (adapter + score head) to
``<run>/adapters/reward-model``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import dataclass, replace

from foundation.generation import task_messages
from foundation.models import bundled_model_dir, resolve_model
from training.training import (TrainSettings, count_parameters, plan_steps, run_trainer, step_callbacks, trainer_args)

LEARNING_RATE = 5e-4  # fixed: trained once per worker, whatever the trial's policy learning rate
RANK = 16
CACHE_KEY = "reward-model"


@dataclass
class RewardModel:
    model: object  # the merged sequence-classification model, eval mode, frozen
    tokenizer: object
    accuracy: float | None  # pairwise accuracy on the held-out pairs
    pairs: int  # train pairs it learned from
    held_out_pairs: int
    steps: int
    train_seconds: float
    final_loss: float | None
    folder: str | None
    trained_now: bool = True  # False when a later trial reuses it

    def stage(self) -> dict:
        return {"name": "reward model", "steps": self.steps,
                "train_seconds": self.train_seconds if self.trained_now else 0.0, "final_loss": self.final_loss,
                "reused": not self.trained_now}

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "folder": self.folder, "steps": self.steps, "pairs": self.pairs,
                "held_out_pairs": self.held_out_pairs, "train_seconds": self.train_seconds,
                "reused": not self.trained_now}


def load_reward_base(task, device: str = "cpu", policy=None):
    """The task's base weights with a fresh scalar head. The tiny random model exists only in
    memory, so its weights are copied from ``policy`` (the base model being trained)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    source = resolve_model(task.model, task.base_dir)
    if source.kind == "tiny":
        config = copy.deepcopy(policy.config)
        config.num_labels = 1
        torch.manual_seed(task.seed)
        model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
        model.base_model.load_state_dict(policy.base_model.state_dict())
    else:
        location = str(bundled_model_dir()) if source.kind == "bundled" else source.location
        model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=1, dtype=dtype,
                                                                   trust_remote_code=task.trust_remote_code)
    return model.to(device)


def pairs_of(records: list) -> list:
    return [r for r in records if r.rejected is not None]


def preference_dataset(records: list, messages):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": messages(r), "chosen": [{"role": "assistant", "content": r.output}],
                               "rejected": [{"role": "assistant", "content": r.rejected}]} for r in pairs_of(records)])


def train_reward_model(model, tokenizer, records: list, *, messages, settings: TrainSettings, device: str = "cpu",
                       rank: int = RANK):
    """LoRA + the score head of ``model`` (a sequence classifier) trained on the records' pairs;
    returns (the PeftModel in eval mode, the run's TrainResult)."""
    from peft import LoraConfig, get_peft_model
    from trl import RewardConfig, RewardTrainer

    setup_start = time.perf_counter()
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id  # the reward is read at the last non-pad token
    adapter = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                         exclude_modules=["score"], modules_to_save=["score"], task_type="SEQ_CLS")
    model = get_peft_model(model, adapter, autocast_adapter_dtype=not device.startswith("cuda"))
    counts = count_parameters(model)
    dataset = preference_dataset(records, messages)
    steps = plan_steps(len(dataset), settings)
    args = trainer_args(RewardConfig, settings, steps, device, cuda_skip=("use_liger_kernel",),
                        max_length=settings.max_seq_length, disable_dropout=True, center_rewards_coefficient=None)
    cbs, time_limit = step_callbacks([], settings, None)
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=cbs)
    result = run_trainer(trainer, tokenizer, n_records=len(dataset), settings=settings, steps=steps,
                         time_limit=time_limit, counts=counts, setup_start=setup_start)
    return result.model, result


def reward_scores(model, tokenizer, conversations: list[list[dict]], batch_size: int = 8) -> list[float]:
    """The reward of each whole conversation (prompt + answer), as GRPOTrainer reads it: the chat
    template's text, right padding, the score at the last token."""
    import torch

    device = next(model.parameters()).device
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    out: list[float] = []
    with torch.inference_mode():
        for b in range(0, len(texts), batch_size):
            inputs = tokenizer(text=texts[b:b + batch_size], return_tensors="pt", padding=True, padding_side="right",
                               add_special_tokens=False).to(device)
            out += [float(x) for x in model(**inputs).logits[:, 0].float()]
    return out


def reward_accuracy(model, tokenizer, records: list, messages) -> float | None:
    """Share of pairs whose chosen answer scores above the rejected one; None without pairs."""
    pairs = pairs_of(records)
    if not pairs:
        return None
    answer = lambda r, text: messages(r) + [{"role": "assistant", "content": text}]  # noqa: E731
    chosen = reward_scores(model, tokenizer, [answer(r, r.output) for r in pairs])
    rejected = reward_scores(model, tokenizer, [answer(r, r.rejected) for r in pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def save_reward_model(model, folder, info: dict) -> None:
    """The adapter and the score head in standard PEFT format, with what was measured beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    (folder / "reward_model.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _key(job) -> str:
    digest = hashlib.sha1("".join(r.key() + str(r.rejected) for r in pairs_of(job.records)).encode()).hexdigest()
    return f"{job.task.model}:{digest}"


def cached_reward_model(job) -> RewardModel:
    """The worker's reward model for these pairs: trained on the first call, then reused."""
    cached = job.cache.get(CACHE_KEY)
    if cached is not None and cached[0] == _key(job):
        return replace(cached[1], trained_now=False)
    messages = job.messages_for or (lambda r: task_messages(job.prompt, r))
    tokenizer = copy.deepcopy(job.tokenizer)
    budget = job.settings.time_budget_s
    one_pass = math.ceil(len(pairs_of(job.records)) / (job.settings.batch_size * job.settings.grad_accum))
    settings = replace(job.settings, learning_rate=LEARNING_RATE, warmup_ratio=0.0, output_dir=None,
                       max_steps=max(job.settings.max_steps, one_pass), epochs=max(job.settings.epochs, 1.0),
                       time_budget_s=budget / 2 if budget else None)  # at least one pass over the pairs
    base = load_reward_base(job.task, job.device, getattr(job.model, "get_base_model", lambda: job.model)())
    peft_model, result = train_reward_model(base, tokenizer, job.records, messages=messages, settings=settings,
                                            device=job.device)
    accuracy = reward_accuracy(peft_model, tokenizer, job.validation, messages)
    folder = job.run_dir / "adapters" / "reward-model" if job.run_dir is not None else None
    rm = RewardModel(None, tokenizer, accuracy, len(pairs_of(job.records)), len(pairs_of(job.validation)),
                     result.steps, result.train_seconds, result.final_loss, str(folder) if folder else None)
    if folder is not None:
        save_reward_model(peft_model, folder, rm.summary())
    rm.model = peft_model.merge_and_unload().eval().requires_grad_(False)
    rm.model.config._name_or_path = "reward-model"  # TRL logs rewards/<name>/mean
    job.cache[CACHE_KEY] = (_key(job), rm)
    return rm
