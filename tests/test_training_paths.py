"""The training fast paths, checked where they can be on a CPU: that dropping the attention mask of
right-padded batches changes nothing a causal model computes for real tokens (what the CUDA path
relies on), that a worker's shared base model trains every trial as a fresh load would, and that the
CUDA settings name real trainer options. The CUDA run itself is ``-m cuda``."""
from __future__ import annotations

import math

import pytest
import torch

from foundation.config import PromptConfig
from foundation.records import Record

ANSWER = "blue blue blue"


def test_right_padded_batch_without_a_mask_scores_real_tokens_the_same(tiny):
    model, tokenizer = tiny
    rows = [tokenizer(t)["input_ids"] for t in ("a short one", "a much longer record with more words in it")]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=mask, labels=labels)
        unmasked = model(input_ids=ids, labels=labels)
    real = mask.bool()
    assert torch.allclose(masked.logits[real], unmasked.logits[real], atol=1e-5)
    assert math.isclose(masked.loss.item(), unmasked.loss.item(), rel_tol=1e-5)
    # A left-padded batch is where the mask matters: the check above would fail there.
    left = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    left_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with torch.no_grad():
        a = model(input_ids=left, attention_mask=left_mask).logits[left_mask.bool()]
        b = model(input_ids=left).logits[left_mask.bool()]
    assert not torch.allclose(a, b, atol=1e-5)


def test_cuda_settings_are_options_of_the_installed_trainer():
    from trl import SFTConfig

    from training.cuda import split_batch, sft_overrides

    assert set(sft_overrides(30)) <= set(SFTConfig.__dataclass_fields__)
    assert sft_overrides(5)["logging_steps"] == 5 and sft_overrides(300)["logging_steps"] == 10
    assert split_batch(48, 20) == (16, 3) and split_batch(8, 64) == (8, 1) and split_batch(5, 1) == (1, 5)


def test_a_shared_base_model_trains_every_trial_as_a_fresh_load_would(tmp_path):
    """One base model per worker, its weights put back between trials: after PiSSA (which rewrites
    base weights) and full fine-tuning, a LoRA trial gives the same model as on a fresh load."""
    from advisor.tasks import load_task
    from conftest import write_task
    from foundation.models import load_model, load_tokenizer, resolve_model
    from foundation.results import TrialConfig
    from training.modelfacts import model_facts
    from training.trial import TrainingKit, train_config

    task = load_task(write_task(tmp_path / "t"))
    source = resolve_model("tiny-random")
    tokenizer = load_tokenizer(source)
    facts = model_facts(load_model(source, seed=0))
    records = [Record(input=f"What colour is box {i}?", output=ANSWER) for i in range(8)]
    shared = {"epochs": 1.0, "batch_size": 4, "learning_rate": 1e-2}
    lora = TrialConfig(method="lora", params={**shared, "rank": 4, "alpha": 8, "dropout": 0.0,
                                              "target_modules": "all-linear"}, max_steps=2, max_seq_length=48)
    others = [TrialConfig(method="pissa", params={**lora.params}, max_steps=2, max_seq_length=48),
              TrialConfig(method="full", params={**shared, "learning_rate": 1e-3}, max_steps=2, max_seq_length=48)]

    def kit(reuse):
        return TrainingKit(task=task, records=records, device="cpu", source=source, tokenizer=tokenizer,
                           facts=facts, reuse_base=reuse)

    probe = torch.tensor([[1, 2, 3, 4, 5]])
    fresh = train_config(lora, kit(False), micro_batch_size=4, label="fresh").model
    with torch.no_grad():
        expected = fresh(input_ids=probe).logits
    reused_kit = kit(True)
    for config in others:
        reused_kit.release(train_config(config, reused_kit, micro_batch_size=4, label=config.method).model)
    again = train_config(lora, reused_kit, micro_batch_size=4, label="reused").model
    with torch.no_grad():
        assert torch.allclose(again(input_ids=probe).logits, expected, atol=1e-5)
    assert reused_kit._base is not None  # the base really was shared


@pytest.mark.cuda
def test_the_cuda_path_trains_with_length_grouped_unmasked_batches():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from foundation.models import load_model, load_tokenizer, resolve_model
    from training.training import TrainSettings, train_sft
    from peft import LoraConfig

    source = resolve_model("tiny-random")
    model, tokenizer = load_model(source, device="cuda", seed=0), load_tokenizer(source)
    records = [Record(input="word " * (i % 17 + 1), output=ANSWER) for i in range(64)]
    result = train_sft(model, tokenizer, records, prompt=PromptConfig(system="A."), device="cuda",
                       adapter=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
                       settings=TrainSettings(max_steps=12, batch_size=16, max_seq_length=64,
                                              micro_batch_from_memory=True))
    assert result.steps == 12 and math.isfinite(result.final_loss) and result.tokens_seen > 0
    adapter_dtypes = {p.dtype for n, p in result.model.named_parameters() if "lora_" in n}
    assert adapter_dtypes == {torch.bfloat16}  # adapters live in the base's dtype on CUDA


def test_cpu_micro_batch_is_bounded_by_tokens_and_keeps_the_effective_batch():
    from training.training import CPU_MICRO_TOKENS, TrainSettings, prepare_device

    long_pairs = TrainSettings(batch_size=8, grad_accum=1, max_seq_length=450)
    prepare_device(None, long_pairs, "cpu", rows_per_record=2)  # 8 pairs × 2 answers × 450 tokens
    assert (long_pairs.batch_size, long_pairs.grad_accum) == (4, 2)
    assert long_pairs.batch_size * 2 * 450 <= CPU_MICRO_TOKENS
    longer = TrainSettings(batch_size=8, grad_accum=1, max_seq_length=514)  # 3 pairs would fit: 3 × 3 ≠ 8
    prepare_device(None, longer, "cpu", rows_per_record=2)
    assert (longer.batch_size, longer.grad_accum) == (2, 4)
    short = TrainSettings(batch_size=8, grad_accum=1, max_seq_length=96)
    prepare_device(None, short, "cpu")
    assert (short.batch_size, short.grad_accum) == (8, 1)  # what fits is left alone
