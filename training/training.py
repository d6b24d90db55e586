"""One SFT training run with TRL's SFTTrainer: the pilot fine-tune and every tuner trial use it.

Loss is on the answer tokens only (conversational prompt/completion records). On CPU training
runs in fp32 without gradient checkpointing (TRL's bf16 + checkpointing defaults are ~20×
slower there); on CUDA bf16 with SDPA attention. Training is bounded by steps, epochs and a
wall-clock budget; extra behaviour (pruning, time limits) comes in through callbacks. The other
objectives (``training.preference``, ...) build their runs from the same pieces: ``trainer_args``,
``apply_adapter``, ``prepare_device``, ``step_callbacks`` and ``run_trainer``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from foundation.errors import AdviseError
from foundation.generation import task_messages
from foundation.records import Record


@dataclass
class TrainSettings:
    max_steps: int = 60
    epochs: float = 3.0
    learning_rate: float = 1e-3
    batch_size: int = 8
    grad_accum: int = 1
    max_seq_length: int = 256
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    time_budget_s: float | None = None
    seed: int = 0
    gradient_checkpointing: bool = False
    output_dir: str | None = None
    micro_batch_from_memory: bool = False  # CUDA: grow the micro-batch to what fits (training.cuda)
    answer_logits: bool = True  # logits at the answer positions only, no mask, CPU_SFT_MICRO_TOKENS (False: the path before)


@dataclass
class TrainResult:
    model: Any
    steps: int
    train_seconds: float
    tokens_seen: int
    final_loss: float | None
    trainable_params: int
    total_params: int
    stopped_reason: str
    log_history: list[dict] = field(default_factory=list)
    setup_seconds: float = 0.0  # adapter, dataset tokenisation, trainer: before the first step
    details: dict = field(default_factory=dict)  # what an objective adds: its stages, a reward model's accuracy

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / self.train_seconds if self.train_seconds > 0 else 0.0


def sft_dataset(records: list[Record], prompt, messages_for=None):
    """Conversational prompt/completion records built with the task's ``prompt:`` section, exactly
    as the candidates ask: TRL computes loss on the completion only. ``messages_for(record)``
    replaces the task's messages (the FT + RAG candidate puts retrieved context in them)."""
    from datasets import Dataset

    messages_for = messages_for or (lambda r: task_messages(prompt, r))
    return Dataset.from_list([
        {"prompt": messages_for(r), "completion": [{"role": "assistant", "content": r.output}]}
        for r in records
    ])


def plan_steps(n_records: int, settings: TrainSettings) -> int:
    """Optimiser steps the run will take: the smaller of max_steps and epochs' worth."""
    per_epoch = max(1, math.ceil(n_records / (settings.batch_size * settings.grad_accum)))
    return max(1, min(settings.max_steps, math.ceil(per_epoch * settings.epochs)))


def _time_limit_callback(budget_s: float):
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        """Stops training once the wall-clock budget is spent (checked after every step)."""

        def __init__(self):
            self.start = None
            self.hit = False

        def on_train_begin(self, args, state, control, **kw):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if time.perf_counter() - self.start > budget_s:
                self.hit = True
                control.should_training_stop = True

    return TimeLimit()


_PLAIN = None


def answer_logits_loss(model, inputs: dict, num_items_in_batch=None):
    """The causal-LM loss with logits computed only where a label is: the hidden state before each
    answer token goes through the LM head (transformers' ``logits_to_keep`` as a boolean mask), the
    prompt's positions never do. With retrieved context ~98% of an FT + RAG record's positions are
    prompt: 49k-wide fp32 logits there were most of a step's memory and a fifth of its FLOPs. The
    same sum of token losses over the same count as the model's own loss (``num_items_in_batch``
    when the Trainer accumulates). None when the model's output does not line up (a model without
    ``logits_to_keep`` masks): the caller computes the full logits instead."""
    import torch.nn.functional as F

    labels = inputs["labels"]
    targets = labels[:, 1:]
    keep = targets != -100
    positions = keep.new_zeros(labels.shape)
    positions[:, :-1] = keep  # the hidden state at t predicts the token at t + 1
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**forward, use_cache=False, logits_to_keep=positions).logits
    wanted = targets[keep]
    if logits.dim() != 2 or logits.size(0) != wanted.numel():
        return None
    loss = F.cross_entropy(logits.float(), wanted, reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else max(1, wanted.numel()))


def slices_logits(model) -> bool:
    """Whether ``answer_logits_loss`` applies: the model takes ``logits_to_keep`` and no virtual
    tokens are prepended to its positions (prompt tuning and kin keep the full path)."""
    import inspect

    config = getattr(model, "active_peft_config", None)
    if config is not None and config.is_prompt_learning:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _plain_loss_trainer():
    """SFTTrainer with the model's own loss, on every device. TRL's loss scores every position and
    adds entropy and accuracy metrics each step: a third of a step's time on CPU
    (bench/results/training.json: 0.78x a plain loop before, 0.975x after, same loss to 5 digits)
    and a host sync per step on CUDA. Tokens are counted on the device and read at log time.

    With ``answer_logits`` (``TrainSettings.answer_logits``, the default) logits are computed at the
    answer positions only (:func:`answer_logits_loss`) and the attention mask is dropped on every
    device: TRL's collator pads on the right, and a causal model's real tokens never see padding on
    their right (``tests/test_training_paths.py``), so SDPA runs its causal kernel without an
    L x L mask or saved attention weights (see ``training.cuda``). Without it: today's path up to
    this change (full logits; the mask kept on CPU), which ``bench/bench_pilot.py`` compares."""
    global _PLAIN
    if _PLAIN is None:
        from trl import SFTTrainer

        class PlainLossSFTTrainer(SFTTrainer):
            _tokens = 0
            answer_logits = True  # False: today's path before answer_logits_loss (bench/bench_pilot.py)
            _slices = None  # whether the model takes answer_logits_loss's mask, learnt on the first step

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                mask = inputs.get("attention_mask")
                self._tokens = self._tokens + (mask.sum() if mask is not None else (inputs["labels"] != -100).sum())
                if mask is not None and (mask.is_cuda or self.answer_logits):
                    inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
                if self.answer_logits and not return_outputs and self._slices is not False:
                    self._slices = self._slices or slices_logits(model)
                    loss = answer_logits_loss(model, inputs, num_items_in_batch) if self._slices else None
                    if loss is not None:
                        return loss
                    self._slices = False  # the model ignored the mask: full logits from now on
                outputs = model(**{**inputs, "use_cache": False})
                loss = outputs.loss
                if num_items_in_batch is not None:  # the Trainer normalises by the whole accumulated batch
                    loss = loss * (inputs["labels"][:, 1:] != -100).sum() / num_items_in_batch
                return (loss, outputs) if return_outputs else loss

            def log(self, logs, *args, **kwargs):
                self._total_train_tokens = int(self._tokens)  # one read-back per logged step
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
                return super().log(logs, *args, **kwargs)

        _PLAIN = PlainLossSFTTrainer
    return _PLAIN


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def trainer_args(config_cls, settings: TrainSettings, steps: int, device: str, *, cuda_skip: tuple = (),
                 **specific):
    """One run's training arguments (``SFTConfig``, ``DPOConfig``, ``KTOConfig``, ``TrainingArguments``):
    fp32 without checkpointing on CPU; on CUDA bf16 and what ``training.cuda`` lists, less ``cuda_skip``
    and what ``config_cls`` does not take. ``specific`` are the trainer's own (``max_length``, ``beta``)."""
    import dataclasses
    import tempfile

    cuda = device.startswith("cuda")
    args = dict(
        output_dir=settings.output_dir or tempfile.mkdtemp(prefix="advise-train-"),
        max_steps=steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=int(settings.warmup_ratio * steps),
        weight_decay=settings.weight_decay,
        bf16=False,
        fp16=False,
        gradient_checkpointing=settings.gradient_checkpointing and cuda,
        use_cpu=not cuda,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=settings.seed,
        data_seed=settings.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        **specific,
    )
    if cuda:  # the CUDA overrides replace the CPU defaults above (bf16, logging, workers)
        from training import cuda as fast

        fields = {f.name for f in dataclasses.fields(config_cls)}
        args.update({k: v for k, v in fast.sft_overrides(steps).items() if k in fields and k not in cuda_skip})
    return config_cls(**args)


def sft_args(settings: TrainSettings, steps: int, device: str):
    """TRL's ``SFTConfig`` for one run (see :func:`trainer_args`): loss on the completion only, no packing."""
    from trl import SFTConfig

    return trainer_args(SFTConfig, settings, steps, device, max_length=settings.max_seq_length,
                        completion_only_loss=True, packing=False)


def apply_adapter(model, adapter, device: str = "cpu"):
    """``model`` with ``adapter`` on it: a PEFT config (on CUDA created in the base's bf16, see
    ``training.cuda``), a callable that prepares the model and returns it (BitFit, full fine-tuning,
    PiSSA keeping its initial adapter), or None (the model as it is, e.g. already a PeftModel)."""
    from peft import PeftConfig, get_peft_model

    if isinstance(adapter, PeftConfig):
        return get_peft_model(model, adapter, autocast_adapter_dtype=not device.startswith("cuda"))
    if callable(adapter):
        return adapter(model)
    return model


CPU_MICRO_TOKENS = 4096  # sequence tokens one CPU micro-batch may hold (rows × rows per record × length)
# SFT with answer-position logits: what is left is the layers' saved activations, ~1 GB a 436-token fp32
# row of SmolLM2-135M with LoRA (peak RSS 3.0 / 5.0 / 10.0 GB at 2 / 4 / 8 rows): 2 such rows a micro-batch
# keep an FT + RAG pilot under 4 GB; short records (the plain pilot's ~55 tokens) still take 8 at once.
CPU_SFT_MICRO_TOKENS = 1024


def prepare_device(model, settings: TrainSettings, device: str, rows_per_record: int = 1,
                   micro_tokens: int | None = None) -> None:
    """On CUDA: the SDPA kernels, and with ``micro_batch_from_memory`` the largest micro-batch that
    fits (``settings`` changed in place; ``rows_per_record`` sequences each, 2 for a preference pair).
    On CPU: at most ``CPU_MICRO_TOKENS`` tokens a micro-batch, the rest by gradient accumulation (the
    effective batch stays): DPO on 8 pairs with ~450-token prompts (retrieved pages, as in an FT + RAG
    pilot; 49k-token vocabulary, fp32 logits) peaked at 21 GB without it and 12 GB with it, at the
    same step time (``bench/bench_cpu_memory.py``). ``micro_tokens`` replaces that cap (SFT's own,
    ``CPU_SFT_MICRO_TOKENS``)."""
    if not device.startswith("cuda"):
        per_row, cap = rows_per_record * settings.max_seq_length, micro_tokens or CPU_MICRO_TOKENS
        if settings.batch_size * per_row > cap and settings.batch_size > 1:
            effective = settings.batch_size * settings.grad_accum
            from training.space import micro_batches

            settings.batch_size, settings.grad_accum = micro_batches(effective, max(1, cap // per_row))
        return
    from training import cuda as fast

    fast.prepare_backends()
    if settings.micro_batch_from_memory:
        effective = settings.batch_size * settings.grad_accum
        rows = fast.micro_batch_rows(model, settings.max_seq_length, effective * rows_per_record)
        settings.batch_size, settings.grad_accum = fast.split_batch(effective, max(1, rows // rows_per_record))


def step_callbacks(callbacks, settings: TrainSettings, on_step) -> tuple[list, Any]:
    """The given callbacks plus the time limit (when ``settings`` has a budget) and ``on_step``'s
    progress; returns (callbacks, the time-limit callback or None)."""
    time_limit = _time_limit_callback(settings.time_budget_s) if settings.time_budget_s else None
    return list(callbacks or []) + [cb for cb in (time_limit, on_step and _progress_callback(on_step)) if cb], time_limit


def _progress_callback(on_step: Callable[[int, int], None]):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            on_step(state.global_step, state.max_steps)

    return Progress()


def _stop_reason(trainer, time_limit, settings: TrainSettings, steps: int) -> str:
    if time_limit is not None and time_limit.hit:
        return f"time budget of {settings.time_budget_s:g} s reached"
    if trainer.control.should_training_stop and trainer.state.global_step < steps:
        return "stopped by a callback"
    return f"completed {trainer.state.global_step} steps"


def train_sft(model, tokenizer, records: list[Record], *, prompt, settings: TrainSettings, adapter=None,
              callbacks: list | None = None, device: str = "cpu",
              on_step: Callable[[int, int], None] | None = None, messages_for=None) -> TrainResult:
    """Train ``model`` on ``records``; returns the trained (adapter-wrapped) model and measurements.

    ``adapter`` is a PEFT config (LoRA, IA3, prompt tuning, ...), a callable that prepares the
    model in place and returns it (BitFit, full fine-tuning), or None for full fine-tuning.
    """
    import torch

    setup_start = time.perf_counter()
    torch.manual_seed(settings.seed)
    model = apply_adapter(model, adapter, device)
    counts = count_parameters(model)
    prepare_device(model, settings, device, micro_tokens=CPU_SFT_MICRO_TOKENS if settings.answer_logits else None)
    steps = plan_steps(len(records), settings)
    cbs, time_limit = step_callbacks(callbacks, settings, on_step)
    trainer = _plain_loss_trainer()(model=model, args=sft_args(settings, steps, device), processing_class=tokenizer,
                          train_dataset=sft_dataset(records, prompt, messages_for), callbacks=cbs)
    trainer.answer_logits = settings.answer_logits
    return run_trainer(trainer, tokenizer, n_records=len(records), settings=settings, steps=steps,
                       time_limit=time_limit, counts=counts, setup_start=setup_start)


def nothing_fits(n_records: int, max_seq_length: int) -> AdviseError:
    return AdviseError(f"none of the {n_records} training records keeps an answer token within "
                       f"{max_seq_length} tokens, so there is nothing to learn; raise max_seq_length")


def run_trainer(trainer, tokenizer, *, n_records: int, settings: TrainSettings, steps: int, time_limit,
                counts: tuple[int, int], setup_start: float) -> TrainResult:
    """Run a prepared trainer (SFT, DPO, KTO, ...) and measure it: what every objective returns.

    ``counts`` is (trainable, total) parameters of the adapted model; ``setup_start`` when the
    run began (adapter, tokenisation, trainer). Tokens come from the trainer's logged ``num_tokens``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # our own progress display reports steps
    trainer.remove_callback(ProgressCallback)
    if len(trainer.train_dataset) == 0:  # TRL drops records with no answer token within max_length
        raise nothing_fits(n_records, settings.max_seq_length)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    model = trainer.model
    model.eval()
    tokenizer.padding_side = "left"  # the trainer may have switched it for training
    return TrainResult(model=model, steps=trainer.state.global_step, train_seconds=seconds,
                       tokens_seen=int(max((h.get("num_tokens", 0) for h in history), default=0)),
                       final_loss=losses[-1] if losses else None, trainable_params=counts[0], total_params=counts[1],
                       stopped_reason=_stop_reason(trainer, time_limit, settings, steps), log_history=history,
                       setup_seconds=start - setup_start)
