"""The preference objectives: DPO and KTO (TRL's trainers), ORPO and SimPO (reference-free losses on
a small ``transformers.Trainer``), and the pilot's staged ``sft+dpo`` and ``sft+kto``.

One model in memory, always. DPO's and KTO's reference log-probabilities are computed once, before
the first step (``precompute_ref_log_probs``), from the model as it enters the stage: TRL runs the
untrained model itself for a callable adapter (BitFit, full fine-tuning: no reference model is
loaded), and through a frozen "ref" copy of the adapter (the adapter's size) for a PeftModel: the
freshly initialised adapter (for LoRA, the base) or, in ``sft+dpo``, the SFT stage's. The copy is
deleted after training. ``tests/test_preference_training.py`` checks that no second model is made,
that the reference runs only before training, and the parameter count while training.

>>> from training.objectives import OBJECTIVES, ObjectiveFacts
>>> OBJECTIVES["kto"].applies(ObjectiveFacts(data_kind="unpaired"))
(True, '')
>>> OBJECTIVES["orpo"].applies(ObjectiveFacts(data_kind="unpaired"))[1]
'needs paired preference data (prompt, chosen, rejected)'
"""
from __future__ import annotations

import contextlib
import copy
import random
import time
from dataclasses import replace

from foundation.errors import AdviseError
from foundation.generation import task_messages
from training import training
from training.objectives import TrainingJob, all_of, needs_desirable, needs_kind, register_objective
from training.space import Hyperparameter
from training.training import TrainResult

PAIRED = "paired preference data (prompt, chosen, rejected)"
ANY_PREFERENCE = "preference data: chosen/rejected pairs or completions labelled desirable or not"
UNPAIRED = "unpaired preference data (completions labelled desirable or not)"
# Left out of the CUDA overrides: length grouping reads an ``input_ids`` column these datasets do not
# have (and KTO must sample in order), and TRL's fused LM head replaces Liger's loss here.
CUDA_SKIP = ("train_sampling_strategy", "use_liger_kernel")


def _messages(job: TrainingJob):
    return job.messages_for or (lambda r: task_messages(job.prompt, r))


def _answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def pair_dataset(job: TrainingJob):
    """Conversational pairs, as DPOTrainer takes them: ``prompt`` messages, ``chosen``, ``rejected``."""
    from datasets import Dataset

    messages = _messages(job)
    return Dataset.from_list([{"prompt": messages(r), "chosen": _answer(r.output), "rejected": _answer(r.rejected)}
                              for r in job.records if r.rejected is not None])


def unpaired_dataset(job: TrainingJob):
    """KTO's rows (``prompt``, ``completion``, ``label``); a pair gives a desirable and an undesirable one.
    KTOTrainer reads rows in order (its KL term pairs each completion with a neighbour's prompt), so they
    are shuffled once with the seed: a pair's two halves, or a file sorted by label, do not sit together."""
    from datasets import Dataset

    messages, rows = _messages(job), []
    for r in job.records:
        rows.append({"prompt": messages(r), "completion": _answer(r.output), "label": r.label is not False})
        if r.rejected is not None:
            rows.append({"prompt": messages(r), "completion": _answer(r.rejected), "label": False})
    random.Random(job.settings.seed).shuffle(rows)
    return Dataset.from_list(rows)


def stage_summary(name: str, result: TrainResult) -> dict:
    return {"name": name, "steps": result.steps, "train_seconds": result.train_seconds,
            "tokens_seen": result.tokens_seen, "final_loss": result.final_loss, "stopped_reason": result.stopped_reason}


@contextlib.contextmanager
def _trl_side_effects_undone(model, dataset):
    """What TRL's preference trainers do to the model around their construction, kept harmless.

    - TRL copies a PeftModel's adapter into "ref" by adding a new adapter with the same config, then
      copying the weights; with PiSSA's (or any SVD-based) init, adding it re-runs the init, which
      rewrites the base weights a second time. The copy is made from the config with plain init.
    - It hashes every weight (a full read of the model) only to name a cache file, which a dataset
      built in memory does not have (its file gets a random name), so the hash is skipped.
    - It patches the base's ``forward`` with a fused LM head; it is taken off again afterwards, so a
      base shared across trials does not collect one wrapper per trial.
    """
    from unittest import mock

    from peft import LoraConfig, PeftModel
    from trl.trainer import dpo_trainer, kto_trainer

    peft = isinstance(model, PeftModel)
    config = model.peft_config.get("default") if peft else None
    base = model.get_base_model() if peft else model
    with contextlib.ExitStack() as stack:
        if isinstance(config, LoraConfig) and config.init_lora_weights is not True:
            plain = copy.copy(config)
            plain.init_lora_weights = True
            model.peft_config["default"] = plain
            stack.callback(model.peft_config.__setitem__, "default", config)
        if not dataset.cache_files:
            for module in (dpo_trainer, kto_trainer):
                stack.enter_context(mock.patch.object(module, "hash_module", lambda m: "in-memory"))
        if "forward" not in vars(base):
            stack.callback(lambda: vars(base).pop("forward", None))
        yield


def _run(job: TrainingJob, name: str, dataset, build, *, rows_per_record: int = 1, min_batch: int = 1,
         details: dict | None = None) -> TrainResult:
    """Adapt the model, size the batch, then build (``build(model, steps, callbacks)``) and run the trainer."""
    import torch

    settings = job.settings  # changed in place, as train_sft does: the trial's OOM retry starts from it
    if not any(len(_chat_ids(job.tokenizer, p, add_generation_prompt=True)) < settings.max_seq_length
               for p in dataset["prompt"]):  # TRL would drop every row, then fail on an empty reference pass
        raise training.nothing_fits(len(job.records), settings.max_seq_length)
    setup_start = time.perf_counter()
    torch.manual_seed(settings.seed)
    model = training.apply_adapter(job.model, job.adapter, job.device)
    counts = training.count_parameters(model)  # before TRL adds its frozen "ref" adapter copy
    training.prepare_device(model, settings, job.device, rows_per_record)
    if settings.batch_size < min_batch:  # KTO's KL estimate needs two rows in a micro-batch
        effective = settings.batch_size * settings.grad_accum
        settings.batch_size, settings.grad_accum = min_batch, max(1, effective // min_batch)
    steps = training.plan_steps(len(dataset), settings)
    callbacks, time_limit = training.step_callbacks(job.callbacks, settings, job.on_step)
    with _trl_side_effects_undone(model, dataset):
        trainer = build(model, steps, callbacks)
        result = training.run_trainer(trainer, job.tokenizer, n_records=len(job.records), settings=settings,
                                      steps=steps, time_limit=time_limit, counts=counts, setup_start=setup_start)
    if "ref" in getattr(result.model, "peft_config", {}):  # TRL's frozen copy: save the trained adapter only
        result.model.delete_adapter("ref")
    result.details = {"stages": [stage_summary(name, result)], **(details or {})}
    return result


def _trl_build(job: TrainingJob, dataset, trainer: str, **specific):
    """``build`` for TRL's ``DPOTrainer`` or ``KTOTrainer`` (``trainer``: "DPO" or "KTO"), the reference
    log-probs precomputed once, before the first step."""
    def build(model, steps, callbacks):
        import trl

        args = training.trainer_args(getattr(trl, f"{trainer}Config"), job.settings, steps, job.device,
                                     cuda_skip=CUDA_SKIP, max_length=job.settings.max_seq_length,
                                     precompute_ref_log_probs=True, **specific)
        return getattr(trl, f"{trainer}Trainer")(model=model, args=args, train_dataset=dataset,
                                                 processing_class=job.tokenizer, callbacks=callbacks)

    return build


def train_dpo(job: TrainingJob) -> TrainResult:
    """DPO (Rafailov et al. 2023) with TRL's ``DPOTrainer``; ``loss_type`` ``sigmoid`` or ``ipo``."""
    beta, loss_type = float(job.params.get("beta", 0.1)), str(job.params.get("loss_type", "sigmoid"))
    dataset = pair_dataset(job)
    return _run(job, "dpo", dataset, _trl_build(job, dataset, "DPO", beta=beta, loss_type=[loss_type]),
                rows_per_record=2, details={"beta": beta, "loss_type": loss_type, "reference": "precomputed"})


def train_kto(job: TrainingJob) -> TrainResult:
    """KTO (Ethayarajh et al. 2024) with TRL's ``KTOTrainer``, on labelled completions or on pairs split
    in two. When the counts differ, desirable rows weigh n_undesirable / n_desirable (the low end of
    the range the KTO paper recommends, eq. 8)."""
    beta, dataset = float(job.params.get("beta", 0.1)), unpaired_dataset(job)
    good = sum(dataset["label"])
    bad = len(dataset) - good
    weight = bad / good if good and bad else 1.0
    return _run(job, "kto", dataset, _trl_build(job, dataset, "KTO", beta=beta, desirable_weight=weight),
                min_batch=2, details={"beta": beta, "desirable": good, "undesirable": bad,
                                      "desirable_weight": weight, "reference": "precomputed"})


# ---------------------------------------------------------------- reference-free: ORPO, SimPO

def orpo_loss(chosen, rejected, lam: float):
    """ORPO (Hong et al. 2024) from each answer's mean per-token log-prob ``logp̄``: the chosen answer's
    NLL plus λ · −log σ(log_odds(chosen) − log_odds(rejected)), log_odds = logp̄ − log(1 − exp(logp̄)).

    >>> import torch
    >>> round(float(orpo_loss(torch.tensor([-0.5]), torch.tensor([-2.0]), 0.1)[0]), 4)
    0.5097
    """
    import torch
    import torch.nn.functional as F

    def log_odds(logp):
        logp = logp.clamp(max=-1e-6)  # log(1 − p̄) is −inf at p̄ = 1
        return logp - torch.log(-torch.expm1(logp))

    ratio = log_odds(chosen) - log_odds(rejected)
    nll, odds = -chosen.mean(), -F.logsigmoid(ratio).mean()
    return nll + lam * odds, {"nll": nll, "odds_ratio_loss": odds, "log_odds_ratio": ratio.mean()}


def simpo_loss(chosen, rejected, beta: float, gamma: float):
    """SimPO (Meng et al. 2024): −log σ(β·logp̄(chosen) − β·logp̄(rejected) − γ), no reference model.

    >>> import torch
    >>> round(float(simpo_loss(torch.tensor([-0.5]), torch.tensor([-2.0]), 2.0, 1.0)[0]), 4)
    0.1269
    """
    import torch.nn.functional as F

    margin = beta * (chosen - rejected)
    return -F.logsigmoid(margin - gamma).mean(), {"reward_margin": margin.mean(),
                                                   "accuracy": (chosen > rejected).float().mean()}


def pair_mean_logps(model, inputs):
    """Each pair's mean per-token log-prob of the chosen and of the rejected answer. The batch is
    [chosen; rejected] (TRL's ``DataCollatorForPreference``), run once through the fused LM head TRL's
    trainers use (log-probs of the answer tokens only, never the full logits)."""
    mask = inputs["completion_mask"]
    labels = inputs["input_ids"].masked_fill(mask == 0, -100)
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                use_cache=False, fused_lm_head=True)
    shift = mask[:, 1:].to(out.log_probs.dtype)
    logps = out.log_probs[:, -shift.size(1):]  # prompt-learning adapters prepend virtual tokens
    return ((logps * shift).sum(1) / shift.sum(1).clamp(min=1)).chunk(2)


def _chat_ids(tokenizer, messages, **kw) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)["input_ids"])


def tokenized_pairs(tokenizer, dataset, max_length: int):
    """What DPOTrainer makes of a conversational pair: the prompt's ids, then each answer's ids from where
    the prompt alone and prompt + answer stop agreeing; pairs whose prompt fills ``max_length`` dropped."""
    from datasets import Dataset
    from trl.data_utils import common_prefix_length

    rows = []
    for row in dataset:
        prompt = _chat_ids(tokenizer, row["prompt"], add_generation_prompt=True)
        chosen = _chat_ids(tokenizer, row["prompt"] + row["chosen"])
        rejected = _chat_ids(tokenizer, row["prompt"] + row["rejected"])
        n = min(common_prefix_length(prompt, chosen), common_prefix_length(prompt, rejected))
        if n < max_length:
            rows.append({"prompt_ids": prompt[:n], "chosen_ids": chosen[n:], "rejected_ids": rejected[n:]})
    return Dataset.from_list(rows)


_REFERENCE_FREE = None


def _reference_free_trainer():
    global _REFERENCE_FREE
    if _REFERENCE_FREE is None:
        from transformers import Trainer

        class ReferenceFreePairTrainer(Trainer):
            """A pair loss on the policy's own log-probs: one forward of [chosen; rejected] a step."""

            loss_is_scaled_for_ga = False  # a mean over pairs: the Trainer divides by the accumulation

            def __init__(self, *args, pair_loss, **kwargs):
                super().__init__(*args, **kwargs)
                self.pair_loss, self._tokens, self._sums, self._batches = pair_loss, 0, {}, 0

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                loss, parts = self.pair_loss(*pair_mean_logps(model, inputs))
                self._tokens = self._tokens + inputs["attention_mask"].sum()  # read back at log time only
                self._sums = {k: self._sums.get(k, 0) + v.detach() for k, v in parts.items()}
                self._batches += 1
                return (loss, {}) if return_outputs else loss

            def log(self, logs, *args, **kwargs):
                logs.update({k: float(v) / self._batches for k, v in self._sums.items()})
                logs["num_tokens"] = int(self._tokens)
                self._sums, self._batches = {}, 0
                return super().log(logs, *args, **kwargs)

        _REFERENCE_FREE = ReferenceFreePairTrainer
    return _REFERENCE_FREE


def reference_free_trainer(job: TrainingJob, model, steps: int, callbacks: list, pair_loss, dataset):
    """The trainer ORPO and SimPO run: TRL's pair collator, the fused LM head, ``pair_loss(chosen, rejected)``."""
    from peft import PeftModel
    from transformers import TrainingArguments
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from trl.trainer.utils import add_fused_lm_head

    from training import cuda as fast

    s = job.settings
    args = training.trainer_args(TrainingArguments, s, steps, job.device, cuda_skip=CUDA_SKIP,
                                 remove_unused_columns=False)
    add_fused_lm_head(model.get_base_model() if isinstance(model, PeftModel) else model)
    pad = fast.sft_overrides(steps).get("pad_to_multiple_of") if job.device.startswith("cuda") else None
    collator = DataCollatorForPreference(pad_token_id=job.tokenizer.pad_token_id, max_length=s.max_seq_length,
                                         pad_to_multiple_of=pad)
    return _reference_free_trainer()(model=model, args=args, data_collator=collator, callbacks=callbacks,
                                     train_dataset=tokenized_pairs(job.tokenizer, dataset, s.max_seq_length),
                                     processing_class=job.tokenizer, pair_loss=pair_loss)


def _train_reference_free(job: TrainingJob, name: str, pair_loss, details: dict) -> TrainResult:
    dataset = pair_dataset(job)
    build = lambda model, steps, cbs: reference_free_trainer(job, model, steps, cbs, pair_loss, dataset)
    return _run(job, name, dataset, build, rows_per_record=2, details={**details, "reference": "none"})


def train_orpo(job: TrainingJob) -> TrainResult:
    lam = float(job.params.get("beta", 0.1))
    return _train_reference_free(job, "orpo", lambda c, r: orpo_loss(c, r, lam), {"beta": lam})


def train_simpo(job: TrainingJob) -> TrainResult:
    beta, ratio = float(job.params.get("beta", 2.0)), float(job.params.get("gamma_ratio", 0.5))
    return _train_reference_free(job, "simpo", lambda c, r: simpo_loss(c, r, beta, beta * ratio),
                                 {"beta": beta, "gamma_ratio": ratio, "gamma": beta * ratio})


# ---------------------------------------------------------------- SFT first, then DPO or KTO

@contextlib.contextmanager
def _stage_limits(settings, max_steps: int, budget_s: float | None):
    """One stage's share of the steps and time, on the job's own settings (so the micro-batch a stage
    settles on stays there for the trial's OOM retry), put back afterwards."""
    saved = settings.max_steps, settings.time_budget_s
    settings.max_steps, settings.time_budget_s = max_steps, budget_s
    try:
        yield
    finally:
        settings.max_steps, settings.time_budget_s = saved


def _sft_then(second, name: str):
    def train(job: TrainingJob) -> TrainResult:
        s = job.settings
        sft_records = [r for r in job.records if r.label is not False]  # the chosen or desirable answers
        if not sft_records:
            raise AdviseError(f"{name}: no desirable completion to fine-tune on first")
        half, budget = max(1, s.max_steps // 2), s.time_budget_s
        rest = max(1, s.max_steps - half)
        total = (training.plan_steps(len(sft_records), replace(s, max_steps=half))
                 + training.plan_steps(len(job.records), replace(s, max_steps=rest)))
        report = job.on_step or (lambda step, of: None)
        with _stage_limits(s, half, budget / 2 if budget else None):
            first = training.train_sft(job.model, job.tokenizer, sft_records, prompt=job.prompt, settings=s,
                                       adapter=job.adapter, device=job.device, messages_for=job.messages_for,
                                       callbacks=job.callbacks, on_step=lambda step, of: report(step, total))
        left = max(budget / 2, budget - first.train_seconds) if budget else None  # half, or what SFT left
        with _stage_limits(s, rest, left):
            result = second(replace(job, model=first.model, adapter=None,
                                    on_step=lambda step, of: report(first.steps + step, total)))
        history = [{**h, "stage": "sft"} for h in first.log_history] + [{**h, "stage": name} for h in
                                                                         result.log_history]
        return replace(result, steps=first.steps + result.steps, train_seconds=first.train_seconds + result.train_seconds,
                       tokens_seen=first.tokens_seen + result.tokens_seen, trainable_params=first.trainable_params,
                       total_params=first.total_params, log_history=history,
                       setup_seconds=first.setup_seconds + result.setup_seconds,
                       details={**result.details, "stages": [stage_summary("sft", first), *result.details["stages"]]})

    return train


BETA = Hyperparameter("beta", "float", 0.01, 0.5, log=True, limits=(1e-4, 10.0),  # DPO's and KTO's
                      help="how far the policy may move from the reference: lower moves further")
LOSS_TYPE = Hyperparameter("loss_type", "categorical", choices=("sigmoid", "ipo"),
                           help="sigmoid: DPO's logistic loss; ipo: IPO's squared loss, steadier on noisy pairs")

register_objective("dpo", label="DPO (direct preference optimisation)", train=train_dpo,
                   hyperparameters=(BETA, LOSS_TYPE), applies=needs_kind("preference", what=PAIRED),
                   description="raises the chosen answer's likelihood over the rejected one's, relative to the "
                               "starting model (reference log-probs computed once)")
register_objective("kto", label="KTO (Kahneman-Tversky optimisation)", train=train_kto, hyperparameters=(BETA,),
                   applies=all_of(needs_kind("preference", "unpaired", what=ANY_PREFERENCE), needs_desirable),
                   description="raises desirable and lowers undesirable completions, relative to the starting "
                               "model; needs no pairs")
register_objective("orpo", label="ORPO (odds-ratio preference optimisation)", train=train_orpo,
                   hyperparameters=(Hyperparameter("beta", "float", 0.05, 1.0, log=True, limits=(1e-4, 10.0),
                                                   help="λ: weight of the odds-ratio term beside the chosen "
                                                        "answer's NLL"),),
                   applies=needs_kind("preference", what=PAIRED),
                   description="SFT on the chosen answer plus an odds-ratio penalty on the rejected one; no "
                               "reference model")
register_objective("simpo", label="SimPO (simple preference optimisation)", train=train_simpo,
                   hyperparameters=(Hyperparameter("beta", "float", 1.0, 10.0, limits=(0.01, 100.0),
                                                   help="scale of the length-normalised log-prob reward"),
                                    Hyperparameter("gamma_ratio", "float", 0.3, 1.0, limits=(0.0, 10.0),
                                                   help="γ/β: the reward margin the chosen answer must win by")),
                   applies=needs_kind("preference", what=PAIRED),
                   description="margin between the chosen and rejected answers' mean log-probs; no reference model")
register_objective("sft+dpo", label="SFT, then DPO", train=_sft_then(train_dpo, "dpo"), default=False,
                   hyperparameters=(BETA, LOSS_TYPE), applies=needs_kind("preference", what=PAIRED),
                   stages=("sft", "dpo"),
                   description="SFT on the chosen answers (half the steps), then DPO on the same adapter against "
                               "the SFT model")
register_objective("sft+kto", label="SFT, then KTO", train=_sft_then(train_kto, "kto"), default=False,
                   hyperparameters=(BETA,), applies=all_of(needs_kind("unpaired", what=UNPAIRED), needs_desirable),
                   stages=("sft", "kto"),
                   description="SFT on the desirable completions (half the steps), then KTO on the same adapter "
                               "against the SFT model")
