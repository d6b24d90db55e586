"""RAG baseline: chunk the corpus, embed it, index it with FAISS, put the top-k chunks in the prompt.

With no corpus, RAG retrieves the k training examples most similar to the query and uses them
as demonstrations (retrieval few-shot); ``details.kind`` says which ran. The index is saved in
the run directory and reused while the corpus, embedder and chunking are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foundation.errors import AdviseError
from foundation.generation import build_messages, generate, render_prompt, task_messages
from foundation.measure import CandidateRun, measure_candidate
from baselines.base import RunContext, register_baseline


@dataclass
class Chunk:
    source: str
    text: str


def chunk_documents(docs, tokenizer, chunk_tokens: int, overlap: int) -> list[Chunk]:
    """Token windows of ``chunk_tokens`` with ``overlap`` shared tokens, cut at the embedder's tokens."""
    step = chunk_tokens - overlap
    chunks = []
    for doc in docs:
        enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if not offsets:
            continue
        for start in range(0, len(offsets), step):
            window = offsets[start : start + chunk_tokens]
            text = doc.text[window[0][0] : window[-1][1]].strip()
            if text:
                chunks.append(Chunk(doc.source, text))
            if start + chunk_tokens >= len(offsets):
                break
    return chunks


# ``index: auto`` switches from exact search to HNSW here. Measured on 2 CPU cores
# (bench/results/retrieval.json): flat p95 5.1 ms at 10k chunks and 27.6 ms at 100k; HNSW
# (efSearch 128) p95 1.5 ms at 100k. Below this size exact search is fast enough and exact.
AUTO_HNSW_FROM = 20_000


def index_kind(requested: str, n_items: int) -> str:
    """The FAISS index kind to build: ``flat`` or ``hnsw``; ``auto`` picks by corpus size."""
    if requested == "auto":
        return "hnsw" if n_items >= AUTO_HNSW_FROM else "flat"
    return requested


def build_index(vectors: np.ndarray, kind: str = "flat"):
    """Inner product on L2-normalised vectors (cosine). ``hnsw`` trades exactness for speed."""
    import faiss

    dim = vectors.shape[1]
    kind = index_kind(kind, len(vectors))
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        # faiss searches with efSearch 16 by default: at 100k vectors that found the true neighbour
        # 62% of the time; 128 found it 98% of the time at p95 1.5 ms (bench/results/retrieval.json).
        index.hnsw.efSearch = 128
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def embed(embedder, texts: list[str]) -> np.ndarray:
    return np.asarray(embedder.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True),
                      dtype=np.float32)


def content_hash(task, texts: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    cfg = task.baselines.rag
    h.update(json.dumps([task.embedder, cfg.chunk_tokens, cfg.chunk_overlap, cfg.index]).encode())
    for source, text in texts:
        h.update(source.encode())
        h.update(b"\0")
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()


def load_or_build_index(ctx: RunContext, items: list[Chunk], folder: Path):
    """The FAISS index over ``items``, reused from ``folder`` when its content hash matches."""
    import faiss

    digest = content_hash(ctx.task, [(c.source, c.text) for c in items])
    meta_path, index_path = folder / "meta.json", folder / "index.faiss"
    if meta_path.exists() and index_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("hash") == digest:
            return faiss.read_index(str(index_path)), True, 0.0
    start = time.perf_counter()
    vectors = []
    with ctx.progress.task("Embedding for RAG", total=len(items)) as advance:
        for b in range(0, len(items), 256):
            vectors.append(embed(ctx.embedder, [c.text for c in items[b : b + 256]]))
            advance(len(items[b : b + 256]))
    index = build_index(np.concatenate(vectors), ctx.task.baselines.rag.index)
    seconds = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(index_path))
    with (folder / "chunks.jsonl").open("w", encoding="utf-8") as f:
        for c in items:
            f.write(json.dumps({"source": c.source, "text": c.text}, ensure_ascii=False) + "\n")
    meta_path.write_text(json.dumps({"hash": digest, "count": len(items), "embedder": ctx.task.embedder,
                                     "build_seconds": seconds}))
    return index, False, seconds


@dataclass
class Retrieval:
    """RAG's retriever and prompt layout, kept in ``ctx.extras["retrieval"]`` so the FT + RAG
    candidate trains and answers with exactly what RAG retrieved with."""

    kind: str  # "corpus" or "retrieval-few-shot"
    items: list[Chunk]
    index: object
    k: int
    embedder: object
    task: object
    train: list  # the train records (retrieval few-shot's demonstrations)

    def search(self, texts: list[str], k: int | None = None) -> list[list[int]]:
        """Indices of the ``k`` nearest items for each text."""
        if not texts:
            return []
        _, hits = self.index.search(embed(self.embedder, texts), min(k or self.k, len(self.items)))
        return [[int(j) for j in h if j >= 0] for h in hits]

    def messages(self, record, hits: list[int]) -> list[dict]:
        """The prompt messages for ``record`` with the items ``hits`` as its context."""
        task = self.task
        if self.kind == "corpus":
            context = "\n\n".join(f"[{self.items[j].source}] {self.items[j].text}" for j in hits)
            user = task.prompt.rag_template.format(input=record.input, context=context)
            return build_messages(record, task.prompt.system, user)
        return task_messages(task.prompt, record, [self.train[j] for j in hits])


def build_retrieval(ctx: RunContext) -> tuple[Retrieval, bool, float]:
    """The task's retriever over its corpus chunks (or its train inputs), the index reused from
    ``runs/<name>/rag/`` while they are unchanged; with whether it was reused and the build time."""
    task, cfg = ctx.task, ctx.task.baselines.rag
    if ctx.corpus:
        kind = "corpus"
        items = chunk_documents(ctx.corpus, ctx.embedder.tokenizer, cfg.chunk_tokens, cfg.chunk_overlap)
        if not items:
            raise AdviseError("the embedder's tokenizer finds no text in the corpus documents", where="corpus.paths")
    else:
        kind = "retrieval-few-shot"
        items = [Chunk(f"train:{i}", r.input) for i, r in enumerate(ctx.splits.train)]
    index, reused, build_seconds = load_or_build_index(ctx, items, ctx.run_dir / "rag")
    return Retrieval(kind, items, index, min(cfg.top_k, len(items)), ctx.embedder, task, ctx.splits.train), reused, build_seconds


@register_baseline("rag", order=1, kind="Retrieval (RAG)", headline="Use retrieval (RAG)",
                   action="Ship retrieval-augmented generation (RAG): the base model answers with passages "
                          "looked up in your documents. No fine-tuning is needed.")
def run_rag(ctx: RunContext):
    task, cfg, tok = ctx.task, ctx.task.baselines.rag, ctx.tokenizer
    eval_recs = ctx.splits.eval
    retrieval, reused, build_seconds = build_retrieval(ctx)
    kind, items = retrieval.kind, retrieval.items
    ctx.extras["retrieval"] = retrieval
    if (again := ctx.reusable("rag")) is not None:
        return [again]

    start = time.perf_counter()
    hits = retrieval.search([r.input for r in eval_recs])
    retrieval_seconds = time.perf_counter() - start
    prompts = [render_prompt(tok, retrieval.messages(r, h)) for r, h in zip(eval_recs, hits)]

    def answer_one(i):
        h = retrieval.search([eval_recs[i].input])[0]
        return generate(ctx.model, tok, [render_prompt(tok, retrieval.messages(eval_recs[i], h))], task.generation,
                        batch_size=1)

    k = retrieval.k
    description = (f"top-{k} of {len(items)} corpus chunks ({cfg.chunk_tokens} tokens, overlap {cfg.chunk_overlap})"
                   if kind == "corpus" else f"top-{k} most similar training examples as demonstrations (no corpus)")
    details = {"kind": kind, "top_k": k, "items_indexed": len(items), "index": index_kind(cfg.index, len(items)),
               "index_requested": cfg.index, "index_reused": reused,
               "index_build_seconds": build_seconds, "retrieval_seconds": retrieval_seconds}
    ctx.extras["rag_hits"] = [[items[j].source for j in h] for h in hits]
    return [measure_candidate(ctx, CandidateRun(
        name="rag", baseline="rag", description=description, model=ctx.model, prompts=prompts,
        answer_one=answer_one, details=details, one_off_seconds=build_seconds, extra_seconds=retrieval_seconds))]
