"""Decision quality: the sequence length follows the data, the pilot knows whether it converged,
the FT + RAG candidate trains with retrieved context, and --seeds says whether the verdict is
stable. Training here is real (the tiny random model); only the validation scores the curve
logic reacts to are scripted where a test needs a curve of a given shape."""
from __future__ import annotations

import json

import pytest

from advisor.stability import summarize_seeds
from advisor.tasks import load_task
from baselines.base import RunContext, load_all
from baselines.finetune_rag import hybrid_pilot, training_hits
from conftest import QA_TRAIN, write_task
from foundation.config import PromptConfig
from foundation.corpus import load_corpus
from foundation.data import load_splits
from foundation.records import Record
from foundation.results import SeedRun
from training.curve import LearningCurve, checkpoints, extend_while_rising, rising
from training.lengths import record_token_lengths, training_length


def _ctx(tiny, path):
    model, tok = tiny
    task = load_task(path)
    return RunContext(task=task, splits=load_splits(task), corpus=load_corpus(task), model=model, tokenizer=tok,
                      device="cpu", run_dir=task.run_dir)


def test_sequence_length_covers_a_system_prompt_longer_than_256_tokens(tiny):
    _, tok = tiny
    prompt = PromptConfig(system=" ".join(f"rule {i}: answer with the code only." for i in range(60)))
    records = [Record(input=f"code of part {i}?", output=f"P-{i:03d}") for i in range(5)]
    lengths = record_token_lengths(tok, prompt, records)
    assert min(p for p, _ in lengths) > 256  # the system prompt alone is longer than the old fixed default
    fit = training_length(lengths, None, None, "baselines.finetune.max_seq_length")
    assert fit.derived and fit.max_seq_length >= max(full for _, full in lengths)
    assert fit.truncated == fit.dropped == 0


@pytest.mark.parametrize("curve, expected", [
    ([(10, 0.2), (20, 0.3), (30, 0.5)], True),   # +0.2 over the last third
    ([(10, 0.2), (20, 0.5), (30, 0.51)], False),  # within min_gain
    ([(10, 0.6), (20, 0.5), (30, 0.4)], False),  # falling
    ([(30, 0.5)], False),  # one point says nothing
])
def test_rising_compares_the_last_third(curve, expected):
    assert rising(curve, min_gain=0.02) is expected


def _trained(tiny_task_file, planned):
    """A real 4-step LoRA pilot on the tiny model, and its kit."""
    from foundation.models import load_model, load_tokenizer, resolve_model
    from baselines.finetune import pilot_config
    from training.modelfacts import model_facts
    from training.trial import TrainingKit, train_config

    task = load_task(tiny_task_file)
    source = resolve_model("tiny-random")
    model, tok = load_model(source, seed=0), load_tokenizer(source)
    kit = TrainingKit(task=task, records=load_splits(task).train, device="cpu", source=source, tokenizer=tok,
                      facts=model_facts(model, "cpu"))
    config = pilot_config(task, 96).model_copy(update={"max_steps": planned})
    trained = train_config(config, kit, micro_batch_size=4, label="pilot")
    return trained, kit


def _scripted(values):
    """Validation scores in the order they are asked for (the trained model is real)."""
    it = iter(values)
    return lambda model: next(it)


def test_the_pilot_is_not_extended_when_its_curve_is_flat(tmp_path):
    trained, kit = _trained(write_task(tmp_path / "t"), 4)
    curve = LearningCurve(_scripted([]), points=[(1, 0.3), (3, 0.4), (4, 0.41)])
    result = extend_while_rising(trained, kit, curve, min_gain=0.02, max_extensions=2, time_budget_s=600)
    assert result.steps == 4 and curve.extended_steps == 0 and "flat" in curve.stopped


def test_the_pilot_trains_on_while_rising_up_to_its_cap(tmp_path):
    trained, kit = _trained(write_task(tmp_path / "t"), 4)
    curve = LearningCurve(_scripted([0.5, 0.6, 0.7, 0.8]), points=[(1, 0.1), (3, 0.2), (4, 0.4)])
    result = extend_while_rising(trained, kit, curve, min_gain=0.02, max_extensions=2, time_budget_s=600)
    assert curve.extended_steps == 4 and result.steps == 8  # two rounds of half the pilot's 4 steps
    assert [s for s, _ in curve.points] == [1, 3, 4, 5, 6, 7, 8]
    assert "still rising after 2 extra round" in curve.stopped
    assert curve.to_dict(0.02)["still_improving"] is True


def test_the_pilot_is_not_extended_past_its_time_budget(tmp_path):
    trained, kit = _trained(write_task(tmp_path / "t"), 4)
    curve = LearningCurve(_scripted([]), points=[(1, 0.1), (3, 0.2), (4, 0.4)])
    budget = trained.result.train_seconds * 1.01  # no room for two more steps
    result = extend_while_rising(trained, kit, curve, min_gain=0.02, max_extensions=2, time_budget_s=budget)
    assert result.steps == 4 and curve.extended_steps == 0 and "time_budget_s" in curve.stopped


def test_a_run_records_the_learning_curve_at_a_third_two_thirds_and_the_end(tiny, tmp_path):
    ctx = _ctx(tiny, write_task(tmp_path / "t", extra="", train=QA_TRAIN))
    candidate = load_all()["finetune"].run(ctx)[0]
    curve = candidate.details["learning_curve"]
    assert curve["steps"][:3] == checkpoints(3) == [1, 2, 3]
    assert len(curve["validation"]) == len(curve["steps"]) and all(0 <= v <= 1 for v in curve["validation"])
    assert curve["stopped"]


def test_the_hybrid_candidate_trains_on_prompts_with_retrieved_context(tiny, tmp_path):
    from training.training import sft_dataset

    ctx = _ctx(tiny, write_task(tmp_path / "t"))
    load_all()["rag"].run(ctx)
    retrieval = ctx.extras["retrieval"]
    pilot = hybrid_pilot(ctx, retrieval)
    rows = sft_dataset(ctx.splits.train, ctx.task.prompt, pilot.train_messages)
    user_turns = [row["prompt"][-1]["content"] for row in rows]
    assert all("Context:" in u and ("[parts.md]" in u or "[intro.md]" in u) for u in user_turns)
    hits = training_hits(retrieval, ctx.splits.train, 1, 0, exclude_self=False)
    assert all(len(h) == retrieval.k + 1 for h in hits)  # the retrieved chunks and one distractor
    assert pilot.eval_prompts[0].count("[parts.md]") + pilot.eval_prompts[0].count("[intro.md]") == retrieval.k


def test_retrieval_few_shot_training_never_shows_a_record_itself(tiny, tmp_path):
    ctx = _ctx(tiny, write_task(tmp_path / "t", corpus=False))
    load_all()["rag"].run(ctx)
    retrieval = ctx.extras["retrieval"]
    hits = training_hits(retrieval, ctx.splits.train, 1, 0, exclude_self=True)
    assert all(i not in h for i, h in enumerate(hits))


def test_seed_agreement_on_a_constructed_case():
    def run(seed, winner, ft):
        return SeedRun(seed=seed, winner=winner, recommendation=winner, means={"rag": 0.5, "finetune": ft})

    stable = summarize_seeds([run(0, "rag", 0.40), run(1, "rag", 0.41), run(2, "rag", 0.40)],
                             {"rag": "rag", "finetune": "finetune"}, 0.02)
    assert stable.stable and stable.wins == {"rag": 3} and stable.summary.startswith("Stable: rag won with each of 3")
    shaky = summarize_seeds([run(0, "rag", 0.45), run(1, "finetune", 0.62), run(2, "rag", 0.48)],
                            {"rag": "rag", "finetune": "finetune"}, 0.02)
    assert not shaky.stable and shaky.wins == {"rag": 2, "finetune": 1}
    assert shaky.spread["finetune"] == pytest.approx([0.45, (0.45 + 0.62 + 0.48) / 3, 0.62])
    assert "finetune's quality ranges 0.450–0.620 (the pilot's training order" in shaky.summary
    same = summarize_seeds([run(0, "rag", 0.5), run(1, "finetune", 0.5)], {"rag": "rag", "finetune": "finetune"}, 0.02)
    assert "bootstrap" in same.summary


def test_run_with_seeds_reports_stability_and_reuses_seed_free_candidates(tmp_path):
    from advisor.pipeline import run_task

    path = write_task(tmp_path / "t", extra="")
    text = path.read_text().replace("finetune: {max_steps: 3", "finetune_rag: {enabled: false}\n  finetune: {max_steps: 2")
    path.write_text(text)
    results = run_task(path, seeds=2)
    st = results.stability
    assert st is not None and st.seeds == [0, 1] and len(st.runs) == 2
    assert set(st.spread) == {c.name for c in results.candidates}
    zero = st.spread["prompt-zero-shot"]
    assert zero[0] == zero[2]  # greedy zero-shot cannot depend on the seed: measured once
    assert (results.verdict.reasons + results.verdict.cautions).count(st.summary) == 1
    seed_dir = tmp_path / "t" / "runs" / "tiny-task" / "seeds" / "1"
    assert (seed_dir / "predictions" / "finetune.jsonl").exists()
    assert not (seed_dir / "predictions" / "prompt-zero-shot.jsonl").exists()
    saved = json.loads((tmp_path / "t" / "runs" / "tiny-task" / "results.json").read_text())
    assert saved["stability"]["summary"] == st.summary


def test_advise_tune_after_an_ft_rag_win_trains_with_retrieved_context(tmp_path):
    """``advise tune`` on its own (after ``advise run --no-tune``) searches what won: when FT + RAG
    won, every trial trains on the RAFT-style prompts and answers with retrieval, as the study that
    ``advise run`` starts would; after a plain fine-tune win, on the task's own prompts."""
    from advisor.pipeline import run_task, study_prompts
    from advisor.tasks import check_task
    from training.training import sft_dataset

    path = write_task(tmp_path / "t")
    path.write_text(path.read_text().replace("finetune: {max_steps: 3", "finetune_rag: {max_steps: 2}\n  finetune: {max_steps: 3"))
    results = run_task(path, tune=False)
    assert {c.name for c in results.candidates} >= {"finetune", "finetune+rag"}
    # baselines.finetune_rag.max_steps limits the FT + RAG pilot alone; the plain pilot keeps finetune's.
    assert results.candidate("finetune+rag").config.max_steps == 2 == results.candidate("finetune+rag").details["steps"]
    assert results.candidate("finetune").config.max_steps == 3 == results.candidate("finetune").details["steps"]
    checked = check_task(path)
    # The tiny random model wins nothing: the verdict is set to each fine-tuned winner in turn.
    results.verdict = results.verdict.model_copy(update={"winner": "finetune", "recommendation": "finetune",
                                                         "finetune_wins": True})
    assert study_prompts(checked, results) is None
    results.verdict = results.verdict.model_copy(update={"winner": "finetune+rag", "recommendation": "finetune_rag"})
    prompts = study_prompts(checked, results)
    rows = sft_dataset(checked.splits.train, checked.task.prompt, prompts.train)
    assert all("Context:" in row["prompt"][-1]["content"] for row in rows)
    assert all("Context:" in prompts.eval(r)[-1]["content"] for r in checked.splits.eval)


def test_ft_rag_whose_prompts_cannot_fit_is_left_out_with_a_caution_not_a_failed_run(tiny, tmp_path):
    """Long retrieved context times top_k can outgrow the training limit (4096 tokens) while the
    plain pilot fits: the run goes on without FT + RAG and the verdict says why it is missing."""
    path = write_task(tmp_path / "t")
    for short in (tmp_path / "t/docs").iterdir():
        short.unlink()
    (tmp_path / "t/docs/long.md").write_text(" ".join(f"Bay {i} stores part P-{i:03d} on shelf {i % 9}." for i in range(900)))
    path.write_text(path.read_text().replace("chunk_tokens: 32, chunk_overlap: 8, top_k: 2",
                                             "chunk_tokens: 1800, chunk_overlap: 0, top_k: 3"))
    ctx = _ctx(tiny, path)
    assert load_all()["rag"].run(ctx)
    assert load_all()["finetune_rag"].run(ctx) == []
    (note,) = ctx.extras["not_measured"]
    assert note.startswith("FT + RAG was not measured: with the top-3 corpus chunks") and "baselines.rag.top_k" in note
