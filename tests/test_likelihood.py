"""Preference accuracy on the tiny random model: answer log-probabilities against a hand
computation, batching that changes nothing, the scoring rules on hand-worked numbers, and PEFT
adapters (LoRA, prompt learning) scored like a plain model."""
from __future__ import annotations

import copy

import pytest
import torch

from foundation.config import PromptConfig
from foundation.generation import task_prompts
from foundation.likelihood import answer_logprobs, pair_scores, preference_scores, sign_scores
from foundation.records import Record

RECORDS = [Record("What colour is the sky?", "Blue."),
           Record("Name a prime number larger than ten, please.", "Eleven is one."),
           Record("2+2?", "4"),
           Record("Say something long about the sea and the wind and the boats.", "The sea is wide and grey.")]


def _prompts(tokenizer, records=RECORDS) -> list[str]:
    return task_prompts(tokenizer, PromptConfig(), records)


def _by_hand(model, tokenizer, prompt: str, answer: str) -> float:
    """One unbatched forward pass, log_softmax, the mean over the answer tokens (end-of-turn included)."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([p + a])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -ids.shape[1]:]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return sum(logp[len(p) - 1 + k, t].item() for k, t in enumerate(a)) / len(a)


def test_answer_logprobs_match_a_hand_computation(tiny):
    model, tokenizer = tiny
    prompts = _prompts(tokenizer)
    got = answer_logprobs(model, tokenizer, prompts, [r.output for r in RECORDS], batch_size=1)
    want = [_by_hand(model, tokenizer, p, r.output) for p, r in zip(prompts, RECORDS)]
    assert got == pytest.approx(want, abs=1e-5)
    assert all(lp < 0 for lp in got)


def test_batching_and_padding_change_nothing(tiny):
    model, tokenizer = tiny
    prompts = _prompts(tokenizer) * 2
    answers = [r.output for r in RECORDS] + ["A much longer answer than the first one, with many more tokens."] * 4
    one_at_a_time = answer_logprobs(model, tokenizer, prompts, answers, batch_size=1)
    for batch_size in (3, 8):
        assert answer_logprobs(model, tokenizer, prompts, answers, batch_size=batch_size) == \
            pytest.approx(one_at_a_time, abs=1e-5)


def test_a_training_model_is_scored_in_eval_mode_and_left_training(tiny):
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    model.config.hidden_dropout = model.config.attention_dropout = 0.5  # dropout would make scores random
    model.train()
    prompts = _prompts(tokenizer)[:2]
    first = answer_logprobs(model, tokenizer, prompts, ["a", "b"])
    assert model.training
    assert answer_logprobs(model, tokenizer, prompts, ["a", "b"]) == first


def test_pair_scores_by_hand():
    scores, margins = pair_scores([-1.0, -2.5, -3.0, -0.25], [-2.0, -2.5, -1.0, -0.75])
    assert scores == [1.0, 0.5, 0.0, 1.0]
    assert margins == [1.0, 0.0, -2.0, 0.5]
    with pytest.raises(ValueError):
        pair_scores([-1.0], [])


def test_sign_scores_by_hand():
    # mean of (-1, -2, -3, -6) is -3: -1 and -2 lie above, -3 (equal) and -6 do not
    scores, margins = sign_scores([-1.0, -2.0, -3.0, -6.0], [True, False, False, True])
    assert scores == [1.0, 0.0, 1.0, 0.0]
    assert margins == [2.0, -1.0, 0.0, -3.0]
    assert sign_scores([], []) == ([], [])


def test_preference_scores_pair_and_label_records(tiny):
    model, tokenizer = tiny
    paired = [Record(r.input, r.output, rejected=r.output + " No, wait: something else entirely.") for r in RECORDS]
    unpaired = [Record(r.input, r.output, label=i % 2 == 0) for i, r in enumerate(RECORDS)]
    records = paired + unpaired
    prompts = _prompts(tokenizer, records)
    scores, margins = preference_scores(model, tokenizer, prompts, records, batch_size=3)

    n = len(paired)
    chosen = answer_logprobs(model, tokenizer, prompts[:n], [r.output for r in paired])
    rejected = answer_logprobs(model, tokenizer, prompts[:n], [r.rejected for r in paired])
    want_scores, want_margins = pair_scores(chosen, rejected)
    lps = answer_logprobs(model, tokenizer, prompts[n:], [r.output for r in unpaired])
    sign = sign_scores(lps, [r.label for r in unpaired])
    assert scores == pytest.approx(want_scores + sign[0], abs=1e-6)
    assert margins == pytest.approx(want_margins + sign[1], abs=1e-5)
    assert set(scores) <= {0.0, 0.5, 1.0}

    with pytest.raises(ValueError, match="neither a rejected answer nor a label"):
        preference_scores(model, tokenizer, prompts[:1], [Record("q", "a")])


def _peft(model, kind: str):
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model

    config = {"lora": LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
              "prompt_tuning": PromptTuningConfig(num_virtual_tokens=5, task_type="CAUSAL_LM"),
              "prefix_tuning": PrefixTuningConfig(num_virtual_tokens=5, task_type="CAUSAL_LM")}[kind]
    torch.manual_seed(0)
    adapted = get_peft_model(copy.deepcopy(model), config)
    with torch.no_grad():  # LoRA starts as a no-op (B = 0); a trained adapter does not
        for name, weight in adapted.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)
    return adapted


@pytest.mark.parametrize("kind", ["lora", "prompt_tuning", "prefix_tuning"])
def test_an_adapter_model_is_scored_like_a_plain_one(tiny, kind):
    model, tokenizer = tiny
    adapted = _peft(model, kind)
    prompts = _prompts(tokenizer)
    answers = [r.output for r in RECORDS]
    got = answer_logprobs(adapted, tokenizer, prompts, answers, batch_size=4)
    want = [_by_hand(adapted, tokenizer, p, a) for p, a in zip(prompts, answers)]
    assert got == pytest.approx(want, abs=1e-5)
    assert got != pytest.approx(answer_logprobs(model, tokenizer, prompts, answers), abs=1e-5)  # the adapter counts


@pytest.mark.parametrize("kind", [None, "lora", "prompt_tuning"])
def test_long_answers_are_scored_in_slices_with_the_same_result(tiny, kind):
    """An answer of ~15k tokens would need GBs of logits in one piece; past the budget the output
    layer is applied a slice of positions at a time, and the scores do not change."""
    model, tokenizer = tiny
    model = _peft(model, kind) if kind else model
    prompts = _prompts(tokenizer)
    answers = [r.output for r in RECORDS[:3]] + [" ".join(["The sea is wide and grey."] * 12)]
    whole = answer_logprobs(model, tokenizer, prompts, answers, batch_size=4)
    vocab = model.get_output_embeddings().weight.shape[0]
    for budget in (vocab * 7, vocab):  # slices of 7 positions, then of one
        assert answer_logprobs(model, tokenizer, prompts, answers, batch_size=4, logits_budget=budget) == \
            pytest.approx(whole, abs=1e-5)
