"""Each baseline for real on the tiny model: real FAISS, real sentence-transformers, real TRL steps."""
import json

import pytest

from advisor.tasks import load_task
from foundation.corpus import load_corpus
from foundation.data import load_splits
from baselines.base import BASELINES, RunContext, load_all, register_baseline
from foundation.config import BaselinesConfig
from conftest import write_task


def make_ctx(tiny, path):
    model, tok = tiny
    task = load_task(path)
    return RunContext(task=task, splits=load_splits(task), corpus=load_corpus(task), model=model, tokenizer=tok,
                      device="cpu", run_dir=task.run_dir)


# compare and distill answer through a compare: model (tests/test_compare_run.py, tests/test_endpoints.py
# run them against real servers); the rest run on the tiny model alone.
NAMES = [name for name, b in load_all().items() if b.when is None]


def test_registry_carries_its_facts_and_every_entry_has_a_config_section():
    entries = load_all()
    assert [b.order for b in entries.values()] == sorted(b.order for b in entries.values())
    # `baselines.<name>:` for each, except those another part of the task turns on (compare:)
    assert {n for n, b in entries.items() if b.when is None} == set(BaselinesConfig.model_fields)
    assert {n for n, b in entries.items() if b.when is not None} == {"compare", "distill"}
    for b in entries.values():
        assert b.kind and b.headline and b.action
    assert [b.name for b in entries.values() if b.fine_tuned] == ["finetune", "finetune_rag", "distill"]
    with pytest.raises(ValueError, match="already registered"):
        register_baseline("rag", order=99, kind="x", headline="x", action="x")(lambda ctx: [])
    with pytest.raises(ValueError, match="order 0 is taken"):
        register_baseline("other", order=0, kind="x", headline="x", action="x")(lambda ctx: [])
    assert set(BASELINES) == set(entries)


@pytest.mark.parametrize("name", NAMES)
def test_baseline_measures_every_eval_example(tiny, tmp_path, name):
    ctx = make_ctx(tiny, write_task(tmp_path / "t"))
    if "rag" in load_all()[name].needs:  # FT + RAG trains and answers with RAG's retriever
        load_all()["rag"].run(ctx)
    out = load_all()[name].run(ctx)
    assert out and all(c.baseline == name for c in out)
    for c in out:
        assert len(c.scores) == len(ctx.splits.eval) == c.quality.n
        assert c.quality.ci_low <= c.quality.mean <= c.quality.ci_high
        assert c.latency.n == ctx.task.generation.latency_queries and c.latency.p50_ms > 0
        assert c.throughput_qps > 0 and c.cost_per_1k_usd > 0 and c.peak_memory_mb > 0
        lines = (ctx.run_dir / c.predictions_file).read_text().splitlines()
        assert len(lines) == len(ctx.splits.eval)
        assert set(json.loads(lines[0])) == {"index", "input", "reference", "prediction", "score"}
    if name == "prompt":
        assert [c.name for c in out] == ["prompt-zero-shot", "prompt-few-shot"]


def test_rag_index_is_reused_while_corpus_is_unchanged(tiny, tmp_path):
    path = write_task(tmp_path / "t")
    first = load_all()["rag"].run(make_ctx(tiny, path))[0]
    second = load_all()["rag"].run(make_ctx(tiny, path))[0]
    assert first.details["kind"] == "corpus" and not first.details["index_reused"]
    assert second.details["index_reused"] and second.one_off_seconds == 0
    (tmp_path / "t/docs/extra.md").write_text("Part 999 carries the code P-999.")
    third = load_all()["rag"].run(make_ctx(tiny, path))[0]
    assert not third.details["index_reused"] and third.details["items_indexed"] > first.details["items_indexed"]


def test_rag_without_corpus_retrieves_training_examples(tiny, tmp_path):
    ctx = make_ctx(tiny, write_task(tmp_path / "t", corpus=False))
    c = load_all()["rag"].run(ctx)[0]
    assert c.details["kind"] == "retrieval-few-shot" and c.details["items_indexed"] == len(ctx.splits.train)
    assert all(src.startswith("train:") for hits in ctx.extras["rag_hits"] for src in hits)


def test_chunks_overlap_and_respect_the_token_size():
    from transformers import AutoTokenizer

    from foundation.corpus import Document
    from foundation.models import bundled_embedder_dir
    from baselines.rag import chunk_documents

    tok = AutoTokenizer.from_pretrained(bundled_embedder_dir())
    text = " ".join(f"word{i}" for i in range(300))
    chunks = chunk_documents([Document("d.md", text)], tok, chunk_tokens=40, overlap=10)
    assert len(chunks) > 5
    for c in chunks:
        assert len(tok(c.text, add_special_tokens=False)["input_ids"]) <= 40
    assert chunks[0].text.split()[-1] in chunks[1].text  # neighbours share tokens


def test_pilot_adapter_is_saved_in_peft_format(tiny, tmp_path):
    from peft import PeftModel

    from foundation.models import load_model, resolve_model

    ctx = make_ctx(tiny, write_task(tmp_path / "t"))
    c = load_all()["finetune"].run(ctx)[0]
    assert c.details["steps"] == 3 and c.one_off_seconds > 0 and c.one_off_cost_usd > 0
    assert c.config is not None and c.config.method == "lora" and c.config.params["rank"] == ctx.task.baselines.finetune.rank
    assert c.details["trainable_params"] < c.details["total_params"]
    adapter = ctx.run_dir / c.details["adapter_dir"]
    model = PeftModel.from_pretrained(load_model(resolve_model("tiny-random")), adapter)
    assert any("lora" in n for n, _ in model.named_parameters())


def test_auto_index_is_exact_for_small_corpora_and_hnsw_for_large_ones():
    import faiss
    import numpy as np

    from baselines.rag import AUTO_HNSW_FROM, build_index

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(AUTO_HNSW_FROM, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    small = build_index(vectors[:500], "auto")
    large = build_index(vectors, "auto")
    assert isinstance(small, faiss.IndexFlatIP)
    assert isinstance(large, faiss.IndexHNSWFlat) and large.hnsw.efSearch == 128
    assert isinstance(build_index(vectors[:500], "hnsw"), faiss.IndexHNSWFlat)
    # The approximate index still finds each stored vector as its own nearest neighbour.
    _, hits = large.search(vectors[:200], 1)
    assert (hits[:, 0] == np.arange(200)).mean() >= 0.95
