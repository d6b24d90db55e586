"""The preference objectives (training.preference) on the tiny random model: one or two steps of each,
the ORPO and SimPO losses against a hand computation, DPO's reference computed once with one model
in memory, applicability, the time budget and records that do not fit."""
from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from foundation.config import PromptConfig
from foundation.errors import AdviseError
from foundation.records import Record
from training import preference
from training.objectives import OBJECTIVES, ObjectiveFacts, TrainingJob
from training.training import TrainSettings

PAIRED = [Record(input=f"Is {i} even?", output="yes" if i % 2 == 0 else "no",
                 rejected="no, it is odd" if i % 2 == 0 else "yes, it is even") for i in range(8)]
UNPAIRED = [Record(input=f"Is {i} even?", output="yes" if i % 2 == 0 else "no", label=i % 3 == 0) for i in range(8)]
PREFERENCE_OBJECTIVES = ("dpo", "kto", "orpo", "simpo", "sft+dpo", "sft+kto")


def fresh_model():
    from foundation.models import load_model, resolve_model

    return load_model(resolve_model("tiny-random"), seed=0)


def lora():
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


class Recorder:
    """A TrainerCallback (the pruner's stand-in) that notes the events it gets and the model's size."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Recorder(TrainerCallback):
            def __init__(self):
                self.events, self.params = [], []

            def on_train_begin(self, args, state, control, model=None, **kw):
                self.params.append(sum(p.numel() for p in model.parameters()))

            def on_step_end(self, args, state, control, **kw):
                self.events.append("step")

            def on_log(self, args, state, control, logs=None, **kw):
                self.events.append("log")

        return _Recorder()


def job_for(tokenizer, records, *, adapter="lora", params=None, steps=2, budget=None, callbacks=(), lr=1e-2,
            max_len=64, model=None):
    seen = []
    job = TrainingJob(model=model or fresh_model(), tokenizer=tokenizer, records=records, prompt=PromptConfig(system="A."),
                      settings=TrainSettings(max_steps=steps, batch_size=2, max_seq_length=max_len, learning_rate=lr,
                                             time_budget_s=budget),
                      adapter=lora() if adapter == "lora" else adapter, params=params or {},
                      callbacks=list(callbacks), on_step=lambda step, total: seen.append(step))
    return job, seen


CASES = [("dpo", PAIRED, {"beta": 0.1, "loss_type": "sigmoid"}), ("dpo", PAIRED, {"beta": 0.2, "loss_type": "ipo"}),
         ("kto", UNPAIRED, {"beta": 0.1}), ("kto", PAIRED, {"beta": 0.1}), ("orpo", PAIRED, {"beta": 0.1}),
         ("simpo", PAIRED, {"beta": 2.0, "gamma_ratio": 0.5}), ("sft+dpo", PAIRED, {"beta": 0.1, "loss_type": "sigmoid"}),
         ("sft+kto", UNPAIRED, {"beta": 0.1})]


@pytest.mark.parametrize("name,records,params", CASES,
                         ids=["dpo-sigmoid", "dpo-ipo", "kto-unpaired", "kto-paired", "orpo", "simpo", "sft+dpo", "sft+kto"])
def test_each_objective_trains_a_lora_adapter(tiny, name, records, params):
    _, tokenizer = tiny
    recorder = Recorder()
    job, seen = job_for(tokenizer, records, params=params, callbacks=[recorder])
    result = OBJECTIVES[name].train(job)
    assert result.steps == 2 and seen == [1, 2]  # on_step counts across both stages of sft+…
    assert result.final_loss is not None and math.isfinite(result.final_loss) and result.tokens_seen > 0
    assert [s["name"] for s in result.details["stages"]] == list(OBJECTIVES[name].stages)
    # The job's callbacks (pruning, the learning curve) see every stage's steps: they count them themselves.
    assert recorder.events.count("step") == result.steps and "log" in recorder.events
    changed = [n for n, p in result.model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    assert changed, "no LoRA weight moved from its zero init"
    assert list(result.model.peft_config) == ["default"]  # TRL's frozen "ref" copy is gone
    assert not result.model.training and 0 < result.trainable_params < result.total_params
    assert set(params) <= set(result.details)  # the hyperparameters it trained with are reported
    if name.startswith("kto") and records is UNPAIRED:
        assert result.details["desirable"] == 3 and result.details["desirable_weight"] == pytest.approx(5 / 3)


def _hand_batch(tiny, loss):
    """A collated batch of two pairs through the reference-free trainer, and the same batch's
    per-token log-probs from the model's plain logits (log_softmax + gather, no TRL)."""
    model, tokenizer = fresh_model(), tiny[1]  # the fused LM head stays on this model's forward
    job, _ = job_for(tokenizer, PAIRED[:2], adapter=None, model=model)
    trainer = preference.reference_free_trainer(job, model, 1, [], loss, preference.pair_dataset(job))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        got = trainer.compute_loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_token = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    mask = batch["completion_mask"][:, 1:].float()
    mean = (per_token * mask).sum(1) / mask.sum(1)
    return got, mean[:2], mean[2:]


def test_orpo_loss_matches_a_hand_computation(tiny):
    got, chosen, rejected = _hand_batch(tiny, lambda c, r: preference.orpo_loss(c, r, 0.3))
    odds = lambda lp: lp - torch.log1p(-torch.exp(lp))
    expected = -chosen.mean() + 0.3 * -F.logsigmoid(odds(chosen) - odds(rejected)).mean()
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_simpo_loss_matches_a_hand_computation(tiny):
    got, chosen, rejected = _hand_batch(tiny, lambda c, r: preference.simpo_loss(c, r, 2.5, 2.5 * 0.4))
    expected = -F.logsigmoid(2.5 * chosen - 2.5 * rejected - 1.0).mean()
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_dpo_reference_is_computed_once_with_one_model_in_memory(tiny, method):
    """The reference forward runs only before training (precomputed columns reach every step), TRL
    never builds a second model, and while training the model is the base (+ a frozen adapter copy)."""
    from trl.trainer import dpo_trainer

    from training.methods import METHODS

    _, tokenizer = tiny
    adapter = "lora" if method == "lora" else METHODS["full"].build({}, None)
    recorder, ref_calls, step_keys = Recorder(), [], []
    real_ref, real_loss = dpo_trainer.DPOTrainer.compute_ref_log_probs, dpo_trainer.DPOTrainer.compute_loss

    def counting_ref(self, *a, **k):
        ref_calls.append(self.state.global_step)
        return real_ref(self, *a, **k)

    def recording_loss(self, model, inputs, *a, **k):
        step_keys.append(set(inputs))
        return real_loss(self, model, inputs, *a, **k)

    def second_model(*a, **k):
        raise AssertionError("DPO loaded a second (reference) model")

    job, _ = job_for(tokenizer, PAIRED, adapter=adapter, callbacks=[recorder], params={"beta": 0.1})
    base_params = sum(p.numel() for p in job.model.parameters())
    with mock.patch.object(dpo_trainer.DPOTrainer, "compute_ref_log_probs", counting_ref), \
            mock.patch.object(dpo_trainer.DPOTrainer, "compute_loss", recording_loss), \
            mock.patch.object(dpo_trainer, "create_model_from_path", second_model):
        result = OBJECTIVES["dpo"].train(job)
    assert ref_calls == [0] * 4  # 8 pairs / batch 2, all before the first step; none while training
    assert len(step_keys) == 2 and all({"ref_chosen_logps", "ref_rejected_logps"} <= k for k in step_keys)
    adapter_size = result.trainable_params if method == "lora" else 0
    assert recorder.params == [base_params + 2 * adapter_size]  # base, its adapter and the adapter's frozen copy
    assert result.details["reference"] == "precomputed"


@pytest.mark.parametrize("name", ["dpo", "kto"])
def test_pissa_reference_copy_leaves_the_base_weights_alone(tiny, name):
    """TRL adds its "ref" adapter with the trained adapter's config; with PiSSA's init that would rewrite
    the base weights a second time (max logit error 0.28 here without the guard). At learning rate 0
    the trained model must still be the original one (PiSSA's residual base + adapter = the weights)."""
    from peft import LoraConfig

    _, tokenizer = tiny
    original = fresh_model()
    pissa = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights="pissa_niter_4",
                       task_type="CAUSAL_LM")
    job, _ = job_for(tokenizer, PAIRED[:4], adapter=pissa, steps=1, lr=0.0)
    result = OBJECTIVES[name].train(job)
    assert result.model.peft_config["default"].init_lora_weights == "pissa_niter_4"  # put back for saving
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        assert torch.allclose(result.model(input_ids=ids).logits, original(input_ids=ids).logits, atol=1e-4)


@pytest.mark.parametrize("name", PREFERENCE_OBJECTIVES)
def test_applies_names_the_data_each_objective_needs(name):
    right = {"sft+kto": ("unpaired",), "kto": ("preference", "unpaired")}.get(name, ("preference",))
    for kind in ("sft", "preference", "unpaired"):
        ok, why = OBJECTIVES[name].applies(ObjectiveFacts(data_kind=kind))
        assert ok == (kind in right) and (ok or why.startswith("needs ") and "preference" in why)
    objective = OBJECTIVES[name]
    assert objective.default == ("+" not in name) and objective.hyperparameters
    assert all(hp.help and hp.limits != (None, None) for hp in objective.hyperparameters if hp.kind != "categorical")


@pytest.mark.parametrize("name", ["dpo", "orpo", "sft+dpo"])
def test_time_budget_stops_training(tiny, name):
    _, tokenizer = tiny
    job, _ = job_for(tokenizer, PAIRED, steps=6, budget=1e-6)
    result = OBJECTIVES[name].train(job)
    assert result.steps == len(OBJECTIVES[name].stages)  # one step a stage, then the budget is spent
    assert all("time budget" in s["stopped_reason"] for s in result.details["stages"])
    assert job.settings.max_steps == 6 and job.settings.time_budget_s == 1e-6  # the stages put them back


@pytest.mark.parametrize("name", ["dpo", "kto", "simpo"])
def test_records_that_do_not_fit_are_an_advise_error(tiny, name):
    _, tokenizer = tiny
    long = [Record(input="word " * 80, output="yes", rejected="no") for _ in range(4)]
    job, _ = job_for(tokenizer, long, max_len=16)
    with pytest.raises(AdviseError, match="raise max_seq_length"):
        OBJECTIVES[name].train(job)
