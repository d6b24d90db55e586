"""Continued pre-training on the corpus, then SFT (``cpt+sft``), on the tiny model: the loss on
every corpus token, the token budget, the two stages on one adapter, and when it applies."""
from __future__ import annotations

import math

import pytest

from foundation.config import TaskConfig
from foundation.records import Record
from training.objectives import OBJECTIVES, ObjectiveFacts, TrainingJob
from training.pretrain import CORPUS_REASON, train_cpt
from training.training import TrainSettings

CHUNKS = [f"Part {i} carries the code P-{i:03d} and ships from bay {i % 7}." for i in range(100, 108)]
RECORDS = [Record(input=f"Which code does part {i} carry?", output=f"P-{i:03d}") for i in range(100, 108)]


def fresh_model():
    from foundation.models import load_model, resolve_model

    return load_model(resolve_model("tiny-random"), seed=0)


def lora():
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def settings(steps: int, batch: int = 4) -> TrainSettings:
    return TrainSettings(max_steps=steps, epochs=100, batch_size=batch, learning_rate=1e-3, max_seq_length=64, seed=0)


def test_applies_only_with_a_corpus():
    objective = OBJECTIVES["cpt+sft"]
    assert objective.applies(ObjectiveFacts(has_corpus=False)) == (False, CORPUS_REASON)
    assert objective.applies(ObjectiveFacts(has_corpus=True)) == (True, "")
    assert objective.default is False and objective.stages == ("cpt", "sft")
    assert [hp.name for hp in objective.hyperparameters] == ["cpt_tokens"]


def test_cpt_step_has_a_finite_loss_on_every_corpus_token(tiny):
    tokenizer = tiny[1]
    result = train_cpt(fresh_model(), tokenizer, CHUNKS, settings=settings(1, batch=len(CHUNKS)),
                       token_budget=10**6, adapter=lora())
    # one step over every chunk: each chunk's tokens and its end-of-text token, no padding
    expected = sum(len(tokenizer(c)["input_ids"]) + 1 for c in CHUNKS)
    assert result.steps == 1 and result.tokens_seen == expected
    assert math.isfinite(result.final_loss) and result.details["cpt_loss_first"] == result.final_loss
    assert result.details["cpt_tokens_seen"] == expected and result.details["cpt_steps"] == 1
    assert not result.model.training


def test_cpt_stops_at_the_token_budget(tiny):
    result = train_cpt(fresh_model(), tiny[1], CHUNKS, settings=settings(20, batch=2), token_budget=50, adapter=lora())
    assert 1 <= result.steps < 20 and result.tokens_seen >= 50
    assert result.stopped_reason == "token budget of 50 reached"


def test_cpt_then_sft_trains_one_adapter_in_two_stages(tiny):
    from transformers import TrainerCallback

    class Count(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kw):
            self.steps += 1

    task = TaskConfig(name="t", model="tiny-random", data={"train": "a.jsonl", "eval": "b.jsonl"})
    model, count = fresh_model(), Count()
    embeddings = model.get_input_embeddings().weight.detach().clone()
    job = TrainingJob(model=model, tokenizer=tiny[1], records=RECORDS, prompt=task.prompt, settings=settings(6),
                      adapter=lora(), params={"cpt_tokens": 100000}, task=task, corpus=CHUNKS, callbacks=[count])
    result = OBJECTIVES["cpt+sft"].train(job)
    stages = result.details["stages"]
    assert [s["name"] for s in stages] == ["cpt", "sft"] and [s["steps"] for s in stages] == [3, 3]
    assert count.steps == 6  # the trial's callbacks (pruning, learning curve) see both stages
    assert result.steps == 6 and result.tokens_seen == sum(s["tokens_seen"] for s in stages)
    assert result.details["cpt_tokens_seen"] == stages[0]["tokens_seen"] > 0
    assert math.isfinite(result.details["cpt_loss_first"]) and math.isfinite(result.details["cpt_loss_last"])
    assert list(result.model.peft_config) == ["default"]
    assert result.model.get_input_embeddings().weight.equal(embeddings)  # LoRA never trains the embeddings


def test_full_fine_tuning_pre_trains_the_embeddings_too(tiny):
    def full(model):
        model.requires_grad_(True)
        return model

    model = fresh_model()
    embeddings = model.get_input_embeddings().weight.detach().clone()
    result = train_cpt(model, tiny[1], CHUNKS, settings=settings(1), token_budget=10**6, adapter=full)
    assert result.trainable_params == result.total_params
    assert not result.model.get_input_embeddings().weight.equal(embeddings)


@pytest.mark.parametrize("chunks", [[], ["  ", "\n"]])
def test_an_empty_corpus_is_an_error(tiny, chunks):
    from foundation.errors import AdviseError

    with pytest.raises(AdviseError, match="no text"):
        train_cpt(fresh_model(), tiny[1], chunks, settings=settings(1), token_budget=100)
