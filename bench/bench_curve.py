"""One point of the pilot's learning curve on the demo's own data: what it costs and what part.

A curve point scores the validation split (manual-qa: 17 records) with the metric on generated
answers. Before: generated in batches of ``generation.batch_size`` (8); now, on a CPU, in one
batch of the whole split, so decoding runs once for all. Measured side by side, interleaved, for
the plain pilot's prompts and for FT + RAG's (RAG's prompts: the retrieved excerpts in each),
with the cost of a teacher-forced validation loss (one forward pass over prompt + reference
answer) that was considered as a second figure at every point and left out: it costs about a
prefill. The base model stands in for the pilot (a LoRA adapter changes the cost of neither).

    python bench/bench_curve.py [--reps 2]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import ROOT, machine_line, median, print_table, quiet_libraries, write_result

NAME = "curve"
TASK = ROOT / "examples" / "manual-qa" / "task.yaml"


def _setup(folder: Path):
    from advisor.tasks import load_task
    from baselines.base import RunContext
    from baselines.rag import build_retrieval
    from foundation.corpus import load_corpus
    from foundation.data import load_splits
    from foundation.models import load_model, load_tokenizer, resolve_model

    shutil.copytree(TASK.parent, folder, ignore=shutil.ignore_patterns("runs"))
    task = load_task(folder / "task.yaml")
    source = resolve_model(task.model, task.base_dir)
    ctx = RunContext(task=task, splits=load_splits(task), corpus=load_corpus(task), model=load_model(source),
                     tokenizer=load_tokenizer(source), device="cpu", run_dir=task.run_dir)
    retrieval = build_retrieval(ctx)[0]
    validation = ctx.splits.validation[: task.baselines.finetune.curve_records]
    hits = dict(zip(map(id, validation), retrieval.search([r.input for r in validation])))
    return ctx, validation, (lambda r: retrieval.messages(r, hits[id(r)]))


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    quiet_libraries()
    from foundation.generation import generate
    from foundation.likelihood import answer_logprobs
    from foundation.metrics import score_records
    from training.evaluate import Evaluator

    with tempfile.TemporaryDirectory() as tmp:
        ctx, validation, rag_messages = _setup(Path(tmp) / "manual-qa")
        task, model, tok = ctx.task, ctx.model, ctx.tokenizer
        figures, raw = {}, {}
        for name, messages_for in (("finetune", None), ("finetune+rag", rag_messages)):
            ev = Evaluator(task, tok, validation, messages_for=messages_for)
            ev.scores(model)  # warm-up: first-call costs are nobody's
            times = {"generate_batch_size": [], "generate_one_batch": [], "loss": []}
            same = True
            for _ in range(args.reps):
                s, gens = _timed(lambda: generate(model, tok, ev.prompts, task.generation))
                times["generate_batch_size"].append(s)
                s, one = _timed(lambda: generate(model, tok, ev.prompts, task.generation, batch_size=len(ev.prompts)))
                times["generate_one_batch"].append(s)
                same &= (score_records(task, gens.texts, validation) == score_records(task, one.texts, validation))
                times["loss"].append(_timed(lambda: answer_logprobs(model, tok, ev.prompts, [r.output for r in validation],
                                                                    batch_size=task.generation.batch_size))[0])
            med = {k: median(v) for k, v in times.items()}
            figures[name] = {**{f"{k}_s": v for k, v in med.items()},
                             "prompt_tokens_mean": sum(gens.prompt_tokens) / len(gens.prompt_tokens),
                             "point_before_s": med["generate_batch_size"], "point_now_s": med["generate_one_batch"],
                             "speedup": med["generate_batch_size"] / med["generate_one_batch"],
                             "one_batch_same_scores": same}
            raw[name] = times
    params = {"task": str(TASK.relative_to(ROOT)), "validation_records": len(validation),
              "batch_size": task.generation.batch_size, "max_new_tokens": task.generation.max_new_tokens,
              "reps": args.reps, "model": task.model}
    rows = [(f"{n}: {k}", f"{v:.2f}" if isinstance(v, float) else str(v)) for n, f in figures.items() for k, v in f.items()]
    print(machine_line())
    print_table(rows)
    write_result(NAME, figures=figures, parameters=params, raw=raw,
                 notes=["the base model stands in for the pilot", "loss_s: a teacher-forced validation loss, measured "
                        "as an alternative and not used (it would add this to every point)"])
    return figures


if __name__ == "__main__":
    main()
