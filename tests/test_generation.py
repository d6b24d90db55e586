"""Batched evaluation generation: the shared-prefix KV cache and the left padding must give the
same answers as generating each prompt on its own."""
import pytest

from foundation.config import GenerationConfig
from foundation.generation import MIN_SHARED_PREFIX, generate, render_prompt, shared_prefix_length

QUESTIONS = ["Where is the reset switch?", "How hot may the kiln get before it trips the safety cut-out?",
             "Who signs off a warranty claim?", "What does E-44 mean?", "Is the K40 kiln sold in Norway?",
             "How many shelves fit?", "Which glaze fires at cone 6 and stays food-safe after firing twice?"]


@pytest.fixture(scope="module")
def lively(tiny):
    """The tiny model with larger random weights: its greedy answers then depend on the prompt
    (at the default init every prompt gets the same special tokens, which would hide a mismatch)."""
    import copy

    import torch

    model, tokenizer = tiny
    model = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    return model, tokenizer


def _prompts(tokenizer, system="You answer questions about kilns. Answer in a few words."):
    return [render_prompt(tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": q}])
            for q in QUESTIONS]


def _one_at_a_time(model, tokenizer, prompts, gen):
    return [generate(model, tokenizer, [p], gen, batch_size=1).texts[0] for p in prompts]


@pytest.mark.parametrize("batch_size", [3, 8])
def test_batched_generation_with_shared_prefix_matches_one_at_a_time(lively, batch_size):
    model, tokenizer = lively
    gen = GenerationConfig(max_new_tokens=12)
    prompts = _prompts(tokenizer)
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert shared_prefix_length(ids) >= MIN_SHARED_PREFIX  # the cached path is the one under test

    batched = generate(model, tokenizer, prompts, gen, batch_size=batch_size)
    assert len(set(batched.texts)) == len(prompts)  # answers differ, so a mix-up would show
    assert batched.texts == _one_at_a_time(model, tokenizer, prompts, gen)
    assert batched.prompt_tokens == [len(x) for x in ids]
    assert all(0 < n <= 12 for n in batched.answer_tokens)


def test_prompts_without_a_shared_prefix_are_generated_without_the_cache(lively):
    model, tokenizer = lively
    gen = GenerationConfig(max_new_tokens=8)
    prompts = QUESTIONS  # raw text: they share no first token
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert shared_prefix_length(ids) == 0
    assert generate(model, tokenizer, prompts, gen, batch_size=4).texts == _one_at_a_time(model, tokenizer, prompts, gen)


def test_shared_prefix_leaves_every_prompt_a_token_of_its_own():
    assert shared_prefix_length([list(range(20)), list(range(20))]) == 19
    assert shared_prefix_length([list(range(20)), list(range(12)) + [99]]) == 12
    assert shared_prefix_length([list(range(5)), list(range(5)) + [1]]) == 0  # below MIN_SHARED_PREFIX


def test_prompt_tuning_adapter_generates_without_the_prefix_cache(lively):
    """Prompt tuning prepends virtual tokens inside generate: a precomputed cache would skip them."""
    import copy

    from peft import PromptTuningConfig, get_peft_model

    from foundation.generation import _can_reuse_cache

    model, tokenizer = lively
    peft_model = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert not _can_reuse_cache(peft_model) and _can_reuse_cache(model)
    gen = GenerationConfig(max_new_tokens=6)
    prompts = _prompts(tokenizer)[:4]
    assert len(set(_one_at_a_time(peft_model, tokenizer, prompts, gen))) > 1
    assert generate(peft_model, tokenizer, prompts, gen, batch_size=4).texts == _one_at_a_time(peft_model, tokenizer, prompts, gen)
