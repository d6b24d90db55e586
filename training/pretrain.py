"""Continued pre-training on the task's corpus, then SFT: the ``cpt+sft`` objective.

Stage 1 is the causal-LM loss on every token of the corpus chunks (the same chunks RAG
retrieves from), bounded by a token budget (``cpt_tokens``), half of the run's steps and half of
its time budget; stage 2 is :func:`training.training.train_sft` on the same model. The adapter is the
trial's own: LoRA and the other PEFT methods never train the embeddings, a callable adapter
(full fine-tuning) trains every weight.

>>> from training.objectives import OBJECTIVES, ObjectiveFacts
>>> OBJECTIVES["cpt+sft"].applies(ObjectiveFacts(has_corpus=False))
(False, 'needs a corpus (corpus.paths) to pre-train on')
"""
from __future__ import annotations

import time

from foundation.errors import AdviseError
from training.objectives import TrainingJob, register_objective
from training.rl import combine, counting_on, halves, second_budget
from training.space import Hyperparameter
from training.training import (TrainResult, TrainSettings, _plain_loss_trainer, apply_adapter, count_parameters,
                            plan_steps, prepare_device, run_trainer, step_callbacks, train_sft, trainer_args)

CORPUS_REASON = "needs a corpus (corpus.paths) to pre-train on"


def _token_budget_callback(budget: int):
    from transformers import TrainerCallback

    class TokenBudget(TrainerCallback):
        """Stops once the trainer has seen ``budget`` tokens (non-pad, counted by the trainer)."""

        trainer = None
        hit = False

        def on_step_end(self, args, state, control, **kw):
            if self.trainer is not None and int(self.trainer._tokens) >= budget:
                self.hit = True
                control.should_training_stop = True

    return TokenBudget()


def corpus_dataset(chunks: list[str]):
    from datasets import Dataset

    return Dataset.from_list([{"text": c} for c in chunks if c.strip()])


def train_cpt(model, tokenizer, chunks: list[str], *, settings: TrainSettings, token_budget: int, adapter=None,
              device: str = "cpu", callbacks: list | None = None, on_step=None) -> TrainResult:
    """Causal-LM loss on every token of ``chunks`` until ``token_budget`` tokens, the steps or the
    time budget are spent. ``details`` holds the tokens seen, the steps and the first and last loss."""
    from trl import SFTConfig

    setup_start = time.perf_counter()
    dataset = corpus_dataset(chunks)
    if len(dataset) == 0:
        raise AdviseError("the corpus has no text to pre-train on")
    model = apply_adapter(model, adapter, device)
    counts = count_parameters(model)
    prepare_device(model, settings, device)
    steps = plan_steps(len(dataset), settings)
    args = trainer_args(SFTConfig, settings, steps, device, max_length=settings.max_seq_length,
                        completion_only_loss=False, packing=False)  # plain text: the loss is on every token
    budget = _token_budget_callback(token_budget)
    cbs, time_limit = step_callbacks([*(callbacks or []), budget], settings, on_step)
    trainer = _plain_loss_trainer()(model=model, args=args, processing_class=tokenizer, train_dataset=dataset,
                                    callbacks=cbs)
    budget.trainer = trainer
    result = run_trainer(trainer, tokenizer, n_records=len(dataset), settings=settings, steps=steps,
                         time_limit=time_limit, counts=counts, setup_start=setup_start)
    if budget.hit:
        result.stopped_reason = f"token budget of {token_budget} reached"
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    result.details = {"cpt_tokens_seen": result.tokens_seen, "cpt_steps": result.steps,
                      "cpt_token_budget": token_budget,
                      "cpt_loss_first": losses[0] if losses else None, "cpt_loss_last": losses[-1] if losses else None,
                      "cpt_chunks": len(dataset)}
    return result


def train_cpt_then_sft(job: TrainingJob) -> TrainResult:
    """Continued pre-training on ``job.corpus`` (half the steps and half the time at most), then SFT
    on the same model. ``job.callbacks`` see both stages, as they do every objective's."""
    cpt_settings, sft_settings = halves(job.settings)
    total = plan_steps(len(job.corpus), cpt_settings) + sft_settings.max_steps
    first = train_cpt(job.model, job.tokenizer, job.corpus, settings=cpt_settings, adapter=job.adapter,
                      token_budget=int(job.params.get("cpt_tokens", 20000)), device=job.device,
                      callbacks=job.callbacks, on_step=counting_on(job, 0, total))
    sft_settings.time_budget_s = second_budget(job.settings, first)
    second = train_sft(first.model, job.tokenizer, job.records, prompt=job.prompt, settings=sft_settings, adapter=None,
                       callbacks=job.callbacks, device=job.device, on_step=counting_on(job, first.steps, total),
                       messages_for=job.messages_for)
    result = combine(first, second, "cpt", "sft")
    result.details = {**first.details, **result.details}
    return result


def needs_corpus(facts) -> tuple[bool, str]:
    return (True, "") if facts.has_corpus else (False, CORPUS_REASON)


register_objective(
    "cpt+sft", label="continued pre-training, then SFT", train=train_cpt_then_sft, default=False,
    applies=needs_corpus, stages=("cpt", "sft"),
    hyperparameters=(Hyperparameter("cpt_tokens", "categorical", choices=(20000, 100000),
                                    help="corpus tokens to pre-train on before SFT (at most half the steps)"),),
    description="causal-LM loss on the corpus chunks (the facts RAG retrieves), then SFT on the same adapter")
