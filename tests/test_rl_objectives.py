"""GRPO with the task's metric as grader, SFT then GRPO, and RLHF (a reward model, then GRPO):
reward values on hand-made completions, the batch shape TRL accepts, one step of each on the
tiny model, a reward model that learns a separable toy set, and (slow) GRPO raising the reward
of the bundled model on an example's train prompts."""
from __future__ import annotations

import math

import pytest

from foundation.config import TaskConfig
from foundation.records import Record
from training.objectives import OBJECTIVES, ObjectiveFacts, TrainingJob
from training.rl import (GRADER_REASON, format_rewards, generation_batch, grader_rewards, metric_rewards)
from training.training import TrainSettings


def make_task(metric: dict, max_new_tokens: int = 4) -> TaskConfig:
    return TaskConfig(name="t", model="tiny-random", data={"train": "a.jsonl", "eval": "b.jsonl"}, metric=metric,
                      generation={"max_new_tokens": max_new_tokens})


def fresh_model():
    from foundation.models import load_model, resolve_model

    return load_model(resolve_model("tiny-random"), seed=0)


def lora():
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def said(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def job_for(tiny, task, records, *, steps=1, params=None, **kw) -> TrainingJob:
    settings = TrainSettings(max_steps=steps, batch_size=4, learning_rate=1e-3, max_seq_length=128, seed=0)
    return TrainingJob(model=fresh_model(), tokenizer=tiny[1], records=records, prompt=task.prompt, settings=settings,
                       adapter=lora(), params=params or {"num_generations": 2, "beta": 0.0}, task=task, **kw)


# ---------------------------------------------------------------- rewards on hand-made completions

def test_exact_match_reward_is_one_for_the_reference_and_zero_otherwise():
    task = make_task({"name": "exact_match"})
    completions = ["Paris.", said("  paris "), said("The capital is Paris."), "Rome"]
    assert metric_rewards(task, completions, ["Paris"] * 4) == [1.0, 1.0, 0.0, 0.0]
    funcs, weights = grader_rewards(task, format_weight=0.2)  # exact_match has no format check
    assert weights == [1.0] and funcs[0].__name__ == "exact_match"
    assert funcs[0](completions=completions, reference=["Paris"] * 4, prompts=[None] * 4) == [1.0, 1.0, 0.0, 0.0]


def test_json_reward_scores_fields_and_the_format_reward_valid_objects():
    task = make_task({"name": "json", "fields": ["name", "city"]})
    ref = '{"name": "Ada", "city": "London", "age": 36}'
    completions = ['{"name": "Ada", "city": "London"}', '```json\n{"name": "Ada", "city": "Paris"}\n```',
                   '{"name": "Bob"}', "name: Ada"]
    assert metric_rewards(task, completions, [ref] * 4) == [1.0, 0.5, 0.0, 0.0]
    assert format_rewards(task, completions) == [1.0, 1.0, 1.0, 0.0]
    funcs, weights = grader_rewards(task, format_weight=0.2)
    assert [f.__name__ for f in funcs] == ["json", "format"] and weights == [1.0, 0.2]
    total = [sum(w * r for w, r in zip(weights, rs))
             for rs in zip(*(f(completions=completions, reference=[ref] * 4) for f in funcs))]
    assert total == pytest.approx([1.2, 0.7, 0.2, 0.0])
    assert len(grader_rewards(task, format_weight=0.0)[0]) == 1


def test_accuracy_reward_reads_the_label_named_and_the_format_reward_any_label():
    task = make_task({"name": "accuracy", "labels": ["billing", "technical", "shipping"]})
    completions = [said("Billing."), said("It is a technical problem"), said("shipping, maybe billing"),
                   said("no idea")]
    refs = ["billing", "billing", "shipping", "billing"]
    assert metric_rewards(task, completions, refs) == [1.0, 0.0, 1.0, 0.0]
    assert format_rewards(task, completions) == [1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("batch,accum,gens", [(b, a, g) for b in (1, 2, 3, 4, 6, 8, 12, 16, 32)
                                              for a in (1, 2, 3) for g in (2, 4)])
def test_generation_batch_holds_whole_groups_and_trl_accepts_it(batch, accum, gens):
    micro, steps_accum = generation_batch(batch, accum, gens)
    total = micro * steps_accum
    assert total % gens == 0 and total >= batch * accum and total - batch * accum < gens
    assert micro <= max(batch, 1)


def test_trl_accepts_the_generation_batch(tmp_path):
    from trl import GRPOConfig

    for batch, gens in ((3, 4), (6, 4), (5, 2), (8, 4)):
        micro, accum = generation_batch(batch, 1, gens)
        args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=micro,
                          gradient_accumulation_steps=accum, num_generations=gens, use_cpu=True, bf16=False,
                          report_to="none")
        assert args.generation_batch_size % gens == 0


def test_applies_reasons():
    for name in ("grpo", "sft+grpo"):
        assert OBJECTIVES[name].applies(ObjectiveFacts(data_kind="sft")) == (False, GRADER_REASON)
        assert OBJECTIVES[name].applies(ObjectiveFacts(data_kind="sft", grader="exact_match")) == (True, "")
        assert OBJECTIVES[name].default is False
    assert OBJECTIVES["sft+grpo"].stages == ("sft", "grpo")
    ok, why = OBJECTIVES["rlhf"].applies(ObjectiveFacts(data_kind="sft", grader="exact_match"))
    assert not ok and "paired preference data" in why
    assert OBJECTIVES["rlhf"].applies(ObjectiveFacts(data_kind="preference")) == (True, "")
    assert OBJECTIVES["rlhf"].default is False
    assert ObjectiveFacts.of(make_task({"name": "contains"}), "sft", []).grader == "contains"
    assert ObjectiveFacts.of(make_task({"name": "embedding_similarity"}), "sft", []).grader is None
    names = {hp.name for hp in OBJECTIVES["grpo"].hyperparameters}
    assert names == {"num_generations", "beta", "format_weight"}


# ---------------------------------------------------------------- training on the tiny model

RECORDS = [Record(input=f"What is the code of part {i}?", output=f"P-{i:03d}") for i in range(8)]


def test_one_grpo_step_with_the_metric_reward(tiny):
    job = job_for(tiny, make_task({"name": "json"}), [Record(input=f"Part {i} as JSON", output=f'{{"part": {i}}}')
                                                        for i in range(4)],
                  params={"num_generations": 2, "beta": 0.05, "format_weight": 0.2})
    result = OBJECTIVES["grpo"].train(job)
    assert result.steps == 1 and not result.model.training
    assert result.tokens_seen > 0 and math.isfinite(result.final_loss)
    d = result.details
    assert [s["name"] for s in d["stages"]] == ["grpo"] and d["prompts_per_step"] == 2 and d["beta"] == 0.05
    assert 0.0 <= d["reward_json_first"] <= 1.0 and d["reward_first"] == d["reward_last"]
    assert "reward_format_first" in d
    assert list(result.model.peft_config) == ["default"]  # TRL's frozen "ref" copy is gone


def test_sft_then_grpo_splits_the_steps_and_callbacks_see_both_stages(tiny):
    from transformers import TrainerCallback

    class Count(TrainerCallback):
        begun = steps = 0

        def on_train_begin(self, args, state, control, **kw):
            self.begun += 1

        def on_step_end(self, args, state, control, **kw):
            self.steps += 1

    count, progress = Count(), []
    job = job_for(tiny, make_task({"name": "exact_match"}), RECORDS, steps=4, callbacks=[count],
                  on_step=lambda step, total: progress.append(step))
    result = OBJECTIVES["sft+grpo"].train(job)
    stages = result.details["stages"]
    assert [s["name"] for s in stages] == ["sft", "grpo"] and [s["steps"] for s in stages] == [2, 2]
    assert result.steps == 4 and count.begun == 2 and count.steps == 4
    assert progress == [1, 2, 3, 4]  # counted on across the stages
    assert [h["stage"] for h in result.log_history if "loss" in h] == ["sft", "sft", "grpo", "grpo"]
    assert result.tokens_seen == sum(s["tokens_seen"] for s in stages)


PAIRS = [Record(input=f"Is item {i} in stock?", output=f"yes, item {i} is in stock", rejected=f"no idea about {i}")
         for i in range(24)]


def test_reward_model_learns_a_separable_toy_set(tiny):
    import copy

    from foundation.generation import task_messages
    from training.reward_model import load_reward_base, reward_accuracy, train_reward_model

    task = make_task({"name": "exact_match"})
    tokenizer = copy.deepcopy(tiny[1])
    messages = lambda r: task_messages(task.prompt, r)  # noqa: E731
    base = load_reward_base(task, policy=fresh_model())
    settings = TrainSettings(max_steps=12, epochs=10, batch_size=4, learning_rate=3e-3, max_seq_length=64, seed=0)
    model, result = train_reward_model(base, tokenizer, PAIRS[:16], messages=messages, settings=settings)
    assert result.steps == 12 and math.isfinite(result.final_loss)
    assert reward_accuracy(model, tokenizer, PAIRS[16:], messages) > 0.5
    assert reward_accuracy(model, tokenizer, RECORDS, messages) is None  # no pairs to compare


def test_rlhf_trains_the_reward_model_once_saves_it_and_runs_grpo_against_it(tiny, tmp_path):
    task = make_task({"name": "exact_match"})
    cache: dict = {}
    first = OBJECTIVES["rlhf"].train(job_for(tiny, task, PAIRS[:16], steps=2, validation=PAIRS[16:],
                                             run_dir=tmp_path, cache=cache))
    rm = first.details["reward_model"]
    assert [s["name"] for s in first.details["stages"]] == ["reward model", "grpo"]
    assert 0.0 <= rm["accuracy"] <= 1.0 and rm["steps"] >= 1 and not rm["reused"] and rm["held_out_pairs"] == 8
    folder = tmp_path / "adapters" / "reward-model"
    assert rm["folder"] == str(folder) and (folder / "adapter_config.json").is_file()
    assert (folder / "reward_model.json").is_file()
    assert first.steps == 2 and "reward_reward-model_first" in first.details
    second = OBJECTIVES["rlhf"].train(job_for(tiny, task, PAIRS[:16], validation=PAIRS[16:], cache=cache))
    assert second.details["reward_model"]["reused"] and second.details["reward_model"]["steps"] == rm["steps"]
    assert second.details["stages"][0]["train_seconds"] == 0.0


# ---------------------------------------------------------------- slow: the bundled model learns

@pytest.fixture
def one_thread_when_busy():
    """On a shared, oversubscribed CPU two torch threads wait on each other at every small op: a
    batch-8 rollout of SmolLM2-135M measured 18-23 s with 2 threads vs 4 s with 1 (load 3-5 on 2
    cores). The threads `advise run` would take now (foundation.threads), restored afterwards."""
    import torch

    from foundation.threads import fit_threads

    threads = torch.get_num_threads()
    fit_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_grpo_raises_the_reward_on_train_prompts_of_an_example(one_thread_when_busy):
    """world-capitals (metric ``contains``): the bundled model names the capital of 6 of 16 train
    countries; 20 GRPO steps rewarded by that metric make it name more (the guides' "RFT needs a
    base that sometimes succeeds": 0.31 of its sampled answers score)."""
    from conftest import REPO
    from peft import LoraConfig

    from advisor.tasks import load_task
    from foundation.data import load_splits
    from foundation.generation import generate, task_prompts
    from foundation.models import load_model, load_tokenizer, resolve_model

    task = load_task(REPO / "examples" / "world-capitals" / "task.yaml")
    task.generation.max_new_tokens = 10  # "The capital of Peru is Lima." fits; shorter rollouts
    train = load_splits(task).train
    source = resolve_model(task.model, task.base_dir)
    tokenizer, model = load_tokenizer(source), load_model(source)
    fixed = train[:16]

    def mean_reward(m) -> float:
        answers = generate(m, tokenizer, task_prompts(tokenizer, task.prompt, fixed), task.generation, batch_size=16)
        return sum(metric_rewards(task, answers.texts, [r.output for r in fixed])) / len(fixed)

    before = mean_reward(model)
    settings = TrainSettings(max_steps=20, epochs=100, batch_size=8, learning_rate=5e-4, max_seq_length=128, seed=0)
    job = TrainingJob(model=model, tokenizer=tokenizer, records=train, prompt=task.prompt, settings=settings, task=task,
                      adapter=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                         task_type="CAUSAL_LM"), params={"num_generations": 4, "beta": 0.0})
    result = OBJECTIVES["grpo"].train(job)
    after = mean_reward(result.model)
    d = result.details
    print(f"\nworld-capitals train prompts, greedy mean reward: before {before:.3f}, after {after:.3f} "
          f"({result.steps} GRPO steps, {result.train_seconds:.0f} s; rollout reward first {d['reward_first']:.3f}, "
          f"last {d['reward_last']:.3f})")
    assert result.steps == 20
    assert after > before
