"""Shared fixtures: a tiny random-init SmolLM2-architecture model with the real tokenizer, and
task folders written to tmp_path. Nothing here touches a model hub."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent

QA_TRAIN = [{"question": f"What is the code of part {i}?", "answer": f"P-{i:03d}"} for i in range(24)]
QA_EVAL = [{"question": f"Which code does part {i} carry?", "answer": f"P-{i:03d}"} for i in range(100, 108)]
DOCS = {"parts.md": "\n\n".join(f"Part {i} carries the code P-{i:03d} and ships from bay {i % 7}." for i in range(100, 108)),
        "intro.md": "# Parts catalogue\n\nEvery part has a code. Codes start with P."}


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_task(folder: Path, *, corpus: bool = True, model: str = "tiny-random", extra: str = "",
               train=None, eval_rows=None) -> Path:
    """A small task on the tiny model: fast enough for unit tests, real in every part."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "data/train.jsonl", train or QA_TRAIN)
    write_jsonl(folder / "data/eval.jsonl", eval_rows or QA_EVAL)
    if corpus:
        for name, text in DOCS.items():
            (folder / "docs").mkdir(exist_ok=True)
            (folder / "docs" / name).write_text(text, encoding="utf-8")
    text = f"""
name: tiny-task
model: {model}
seed: 0
device: cpu
data: {{train: data/train.jsonl, eval: data/eval.jsonl}}
corpus: {{paths: {'[docs/]' if corpus else '[]'}}}
metric: {{name: contains}}
generation: {{max_new_tokens: 6, batch_size: 4, latency_queries: 3}}
baselines:
  prompt: {{few_shot_k: 2}}
  rag: {{chunk_tokens: 32, chunk_overlap: 8, top_k: 2}}
  finetune: {{max_steps: 3, batch_size: 4, max_seq_length: 96}}
verdict: {{bootstrap_samples: 300}}
output: {{dir: runs}}
{extra}
"""
    path = folder / "task.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def write_preference_task(folder: Path, train, eval_rows, *, steps: int = 4, rag: bool = True, extra: str = "") -> Path:
    """A task on preference records (TRL's prompt/chosen/rejected, or prompt/completion/label) on the tiny model."""
    write_jsonl(folder / "data/train.jsonl", train)
    write_jsonl(folder / "data/eval.jsonl", eval_rows)
    path = folder / "task.yaml"
    path.write_text(f"""
name: prefs
model: tiny-random
device: cpu
data: {{train: data/train.jsonl, eval: data/eval.jsonl}}
generation: {{max_new_tokens: 6, batch_size: 4, latency_queries: 2}}
baselines:
  prompt: {{few_shot_k: 1}}
  rag: {{enabled: {str(rag).lower()}}}
  finetune: {{max_steps: {steps}, batch_size: 4, max_extensions: 0}}
verdict: {{bootstrap_samples: 200}}
{extra}
""", encoding="utf-8")
    return path


@pytest.fixture
def task_file(tmp_path):
    return write_task(tmp_path / "task")


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) built from the SmolLM2 config, random weights, real tokenizer."""
    from foundation.models import load_model, load_tokenizer, resolve_model

    src = resolve_model("tiny-random")
    return load_model(src, seed=0), load_tokenizer(src)


def learnable_in_a_few_steps(path: Path) -> Path:
    """A write_task task made one a pilot learns in a few LoRA steps and the random tiny model
    cannot answer: one-token answers, exact match, 12 steps at a high learning rate."""
    path.write_text(path.read_text()
                    .replace("metric: {name: contains}", "metric: {name: exact_match}")
                    .replace("max_new_tokens: 6", "max_new_tokens: 1")
                    .replace("finetune: {max_steps: 3, batch_size: 4, max_seq_length: 96}",
                             "finetune: {max_steps: 12, batch_size: 8, learning_rate: 0.02, rank: 16, alpha: 512, "
                             "max_seq_length: 64}"))
    return path
