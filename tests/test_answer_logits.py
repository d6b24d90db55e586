"""Logits only at the answer positions (``training.training.answer_logits_loss``): every record's loss
is the one the full-logits path computes, in a batch and alone, a training run follows the same
losses, and logits taken one position off would show."""
from __future__ import annotations

import math

import pytest
import torch

from foundation.config import PromptConfig
from foundation.records import Record

PROMPT = PromptConfig(system="Answer with the colour.", template="Item {input}:")
RECORDS = [Record(input=f"number {i} " + "with a longer description " * (i % 4), output=f"colour {i % 5} blue")
           for i in range(12)]


def fresh_tiny():
    from foundation.models import load_model, load_tokenizer, resolve_model

    source = resolve_model("tiny-random")
    return load_model(source, seed=0), load_tokenizer(source)


def lora_trainer(model, tokenizer):
    from peft import LoraConfig

    from training.training import TrainSettings, _plain_loss_trainer, apply_adapter, sft_args, sft_dataset

    model = apply_adapter(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    settings = TrainSettings(max_steps=1, batch_size=4, max_seq_length=64)
    return _plain_loss_trainer()(model=model, args=sft_args(settings, 1, "cpu"), processing_class=tokenizer,
                                 train_dataset=sft_dataset(RECORDS, PROMPT))


def both_losses(trainer, batch, **kw) -> tuple[float, float]:
    out = []
    for answer_logits in (False, True):
        trainer.answer_logits = answer_logits
        with torch.no_grad():
            out.append(float(trainer.compute_loss(trainer.model, dict(batch), **kw)))
    return out[0], out[1]


def test_every_record_loses_the_same_with_logits_at_answer_positions_only():
    trainer = lora_trainer(*fresh_tiny())
    data, collate = trainer.train_dataset, trainer.data_collator
    alone = []
    for i in range(len(data)):
        old, new = both_losses(trainer, collate([data[i]]))
        assert math.isclose(old, new, rel_tol=1e-5, abs_tol=1e-6), (i, old, new)
        alone.append(old)
    assert len({round(x, 4) for x in alone}) > len(alone) // 2  # the records really differ
    batch = collate([data[i] for i in range(len(data))])  # right-padded, lengths differ
    assert (batch["attention_mask"] == 0).any()
    old, new = both_losses(trainer, batch)
    assert math.isclose(old, new, rel_tol=1e-5) and trainer._slices is True  # it took the new path
    answers = int((batch["labels"][:, 1:] != -100).sum())
    old, new = both_losses(trainer, batch, num_items_in_batch=torch.tensor(3 * answers))  # accumulation
    assert math.isclose(old, new, rel_tol=1e-5) and math.isclose(old * 3, both_losses(trainer, batch)[0], rel_tol=1e-5)


def test_logits_one_position_off_would_give_another_loss():
    """The check above has the power to see a misplaced logit: the hidden state at the answer token
    itself (instead of the one before it) scores another loss on the same model."""
    from training.training import answer_logits_loss

    trainer = lora_trainer(*fresh_tiny())
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    labels = batch["labels"]
    with torch.no_grad():
        right = float(answer_logits_loss(trainer.model, dict(batch)))
        keep = labels != -100  # unshifted: each answer token's own position
        logits = trainer.model(input_ids=batch["input_ids"], logits_to_keep=keep).logits
        off = float(torch.nn.functional.cross_entropy(logits.float(), labels[keep]))
        full = trainer.model(**batch)  # the model's own shifted loss over the full logits
    assert math.isclose(right, float(full.loss), rel_tol=1e-5)
    assert abs(off - right) > 1e-3


def test_training_takes_the_same_steps_on_both_paths():
    from peft import LoraConfig

    from training.training import TrainSettings, train_sft

    runs = []
    for answer_logits in (False, True):
        model, tokenizer = fresh_tiny()
        settings = TrainSettings(max_steps=4, batch_size=4, grad_accum=2, max_seq_length=64, learning_rate=1e-2,
                                 answer_logits=answer_logits)
        runs.append(train_sft(model, tokenizer, RECORDS, prompt=PROMPT, settings=settings,
                              adapter=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")))
    (old, new) = ([h["loss"] for h in r.log_history if "loss" in h] for r in runs)
    assert len(old) == 4 and old[0] != old[-1]  # it trained
    assert new == pytest.approx(old, rel=1e-4)
    assert runs[0].tokens_seen == runs[1].tokens_seen > 0


def test_virtual_token_adapters_keep_the_full_logits():
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    from training.training import slices_logits

    assert slices_logits(get_peft_model(fresh_tiny()[0], LoraConfig(r=4, task_type="CAUSAL_LM")))
    assert not slices_logits(get_peft_model(fresh_tiny()[0], PromptTuningConfig(num_virtual_tokens=4,
                                                                                 task_type="CAUSAL_LM")))


def test_cpu_sft_micro_batch_holds_two_long_rows_and_keeps_short_batches_whole():
    """FT + RAG records (~450 tokens with retrieved pages) train 2 rows at a time under 4 GB; the plain
    pilot's short records keep their batch of 8; the path before keeps its own cap."""
    from training.training import CPU_SFT_MICRO_TOKENS, TrainSettings, prepare_device

    long_rows = TrainSettings(batch_size=8, max_seq_length=456)
    prepare_device(None, long_rows, "cpu", micro_tokens=CPU_SFT_MICRO_TOKENS)
    assert (long_rows.batch_size, long_rows.grad_accum) == (2, 4)
    short = TrainSettings(batch_size=8, max_seq_length=128)
    prepare_device(None, short, "cpu", micro_tokens=CPU_SFT_MICRO_TOKENS)
    assert (short.batch_size, short.grad_accum) == (8, 1)
    before = TrainSettings(batch_size=8, max_seq_length=456)
    prepare_device(None, before, "cpu")
    assert (before.batch_size, before.grad_accum) == (8, 1)
