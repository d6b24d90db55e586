"""Endpoint eval throughput: the same eval requests one at a time vs at the configured concurrency.

A local ``transformers serve`` of the bundled SmolLM2-135M-Instruct on loopback stands in for a
hosted API; advise's own client (``foundation.endpoints.Endpoint.complete_all``: the ``openai``
client, a thread pool bounded at ``concurrency``) sends the manual-qa eval questions with the
task's prompt, greedy, ``max_new_tokens`` tokens. Each repetition uses a fresh Endpoint with no
cache, so every request reaches the server; concurrency 1 and N alternate so machine noise hits
both. Throughput = answers per second over the whole set; the ratio N/1 is what bounded
concurrency buys against this server (a hosted API serves many requests in parallel; a
one-process CPU server can only overlap HTTP and tokenisation with generation).

    python bench/bench_endpoint.py [--questions 24] [--concurrency 4] [--reps 2] [--continuous-batching]

Results: bench/results/endpoint.json (the server as `transformers serve` starts by default: one
request generated at a time) and endpoint_continuous_batching.json (--continuous-batching).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import ROOT, machine_line, median, print_table, quiet_libraries, write_result

NAME = "endpoint"
sys.path.insert(0, str(ROOT / "tests"))


def conversations(n: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in (ROOT / "examples/manual-qa/data/eval.jsonl").read_text().splitlines()]
    system = "You answer questions about the Kestrel heat pump manual. Answer briefly."
    return [[{"role": "system", "content": system}, {"role": "user", "content": r["question"]}]
            for r in (rows * (n // len(rows) + 1))[:n]]


def one_pass(url: str, folder: str, convs, concurrency: int, max_tokens: int) -> dict:
    from foundation.compare_config import CompareModel
    from foundation.endpoints import Endpoint

    cfg = CompareModel(name="local", model=folder, base_url=url, concurrency=concurrency, timeout=600, max_retries=0)
    replies, seconds = Endpoint(cfg, 0).complete_all(convs, {"max_tokens": max_tokens, "temperature": 0.0})
    return {"qps": len(replies) / seconds, "seconds": seconds, "texts": [r.text for r in replies],
            "completion_tokens": sum(r.completion_tokens or 0 for r in replies)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=24)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--continuous-batching", action="store_true")
    args = ap.parse_args(argv)
    quiet_libraries()
    from endpoint_servers import TransformersServe
    from foundation.models import bundled_model_dir

    folder = bundled_model_dir()
    serve = TransformersServe(folder, Path(tempfile.mkdtemp()) / "serve.log",
                              extra=["--continuous-batching"] if args.continuous_batching else [])
    convs = conversations(args.questions)
    runs: dict[int, list[dict]] = {1: [], args.concurrency: []}
    try:
        serve.wait()
        one_pass(serve.url, str(folder), convs[:2], 1, args.max_new_tokens)  # warm-up, not timed
        for _ in range(args.reps):
            for c in runs:
                runs[c].append(one_pass(serve.url, str(folder), convs, c, args.max_new_tokens))
    finally:
        serve.stop()
    q1 = median([r["qps"] for r in runs[1]])
    qn = median([r["qps"] for r in runs[args.concurrency]])
    same = sum(a == b for a, b in zip(runs[1][0]["texts"], runs[args.concurrency][0]["texts"])) / len(convs)
    figures = {"qps_concurrency_1": q1, f"qps_concurrency_{args.concurrency}": qn, "speedup": qn / q1 if q1 else None,
               "answers_identical_share": same,
               "completion_tokens_per_pass": runs[1][0]["completion_tokens"]}
    print(machine_line())
    print_table([(k, f"{v:.3f}" if isinstance(v, float) else v) for k, v in figures.items()])
    path = write_result(NAME + ("_continuous_batching" if args.continuous_batching else ""), figures=figures, parameters=vars(args) | {"server": "transformers serve",
                                                                     "model": "bundled SmolLM2-135M-Instruct"},
                        raw={str(c): [{k: v for k, v in r.items() if k != "texts"} for r in rs] for c, rs in runs.items()})
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
