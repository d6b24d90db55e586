"""A realistic hand-built ``Results`` for the report tests (and docs/example-report.html).

Four candidates on 40 eval examples of a ticket-routing task, the verdict computed by the
real rule (``decision.verdict.decide``), a study with finished, pruned and failed trials and
excluded methods, and predictions files written into the run directory. One model answer is
``<script>alert(1)</script>`` and one input carries HTML, to test escaping.

Regenerate the docs example: ``python tests/conftest_reports.py docs/``.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from foundation.config import TaskConfig
from foundation.results import (CandidateResult, Latency, Quality, Results, Study, Tokens, Trial, TrialConfig,
                                save_results)
from foundation.stats import bootstrap_ci
from decision.verdict import decide

XSS = "<script>alert(1)</script>"
HTML_INPUT = 'My invoice shows <b>two</b> charges & a "pending" refund — which team?'
QUEUES = ["billing", "tech-support", "account-security", "shipping", "returns", "sales"]
TICKETS = {
    "billing": "I was charged twice for my subscription this month.",
    "tech-support": "The app crashes when I open the settings page.",
    "account-security": "Someone logged into my account from another country.",
    "shipping": "My parcel has been stuck in transit for nine days.",
    "returns": "How do I send back a jacket that does not fit?",
    "sales": "Do you offer a discount for a team of forty people?",
}
N_EVAL = 40
# name, baseline, share answered correctly, p50 ms, p95 ms, qps, cost/1k, one-off s, one-off $, memory MB
CANDIDATES = [
    ("prompt-zero-shot", "prompt", 0.30, 180, 260, 14.0, 0.021, 0.0, 0.0, 610),
    ("prompt-few-shot", "prompt", 0.50, 340, 470, 8.1, 0.038, 0.0, 0.0, 640),
    ("rag", "rag", 0.55, 410, 560, 6.9, 0.046, 12.4, 0.0017, 820),
    ("finetune", "finetune", 0.875, 175, 250, 14.2, 0.021, 412.0, 0.3433, 1950),
]


def make_task(**overrides) -> TaskConfig:
    raw = {
        "name": "ticket-routing",
        "seed": 7,
        "data": {"train": "data/train.jsonl", "eval": "data/eval.jsonl"},
        "metric": {"name": "exact_match"},
        "prompt": {"system": "Route the ticket to one queue: " + ", ".join(QUEUES) + ". Answer with the queue name."},
        "constraints": {"queries_per_month": 250_000, "horizon_months": 12, "latency_p95_ms": 2000,
                        "hourly_price_usd": 3.0, "knowledge_changes": "yearly"},
        "tune": {"n_trials": 12, "pruner": "hyperband"},
    }
    raw.update(overrides)
    return TaskConfig.model_validate(raw)


def _eval_set(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for i in range(N_EVAL):
        queue = QUEUES[i % len(QUEUES)]
        text = TICKETS[queue] if i % 4 else f"Ticket #{1000 + i}: {TICKETS[queue].lower()} Please help."
        out.append((text, queue))
    out[1] = (HTML_INPUT, "billing")
    return out


def _scores(share: float, rng: random.Random, must_be: dict[int, float]) -> list[float]:
    correct = round(share * N_EVAL)
    order = list(range(N_EVAL))
    rng.shuffle(order)
    scores = [0.0] * N_EVAL
    for i in order[:correct]:
        scores[i] = 1.0
    for i, v in must_be.items():
        if scores[i] != v:  # swap with another example so the mean stays the same
            j = next(k for k in order if scores[k] == v and k not in must_be)
            scores[i], scores[j] = v, scores[i]
    return scores


def _candidates(run_dir: Path) -> list[CandidateResult]:
    rng = random.Random(7)
    rows = _eval_set(rng)
    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, baseline, share, p50, p95, qps, per_1k, one_off_s, one_off_usd, mem in CANDIDATES:
        # examples 0 and 1: only the fine-tuned model is right, so they are shown as before/after
        must = {0: 1.0, 1: 1.0} if baseline == "finetune" else {0: 0.0, 1: 0.0}
        scores = _scores(share, rng, must)
        lines = []
        for i, ((text, ref), score) in enumerate(zip(rows, scores)):
            if score:
                pred = ref
            elif name == "prompt-zero-shot" and i == 0:
                pred = XSS
            elif name.startswith("prompt"):
                pred = rng.choice(["Customer Service", "Support", f"This looks like a {ref} issue."])
            else:
                pred = rng.choice([q for q in QUEUES if q != ref])
            lines.append({"index": i, "input": text, "reference": ref, "prediction": pred, "score": score})
        rel = f"predictions/{name}.jsonl"
        (run_dir / rel).write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        mean, lo, hi = bootstrap_ci(scores, seed=7)
        details = {"few_shot_k": 3} if name == "prompt-few-shot" else {}
        if baseline == "rag":
            details = {"kind": "retrieval few-shot", "top_k": 3}
        if baseline == "finetune":
            details = {"rank": 8, "alpha": 16, "learning_rate": 1e-3, "steps": 60}
        out.append(CandidateResult(
            name=name, baseline=baseline, description={
                "prompt": "Base model with the task prompt" + (" and 3 examples" if "few" in name else ""),
                "rag": "Base model with the 3 most similar training tickets in the prompt",
                "finetune": "Pilot LoRA (rank 8) trained for 60 steps"}[baseline],
            details=details, quality=Quality(mean=mean, ci_low=lo, ci_high=hi, n=N_EVAL), scores=scores,
            latency=Latency(p50_ms=p50, p95_ms=p95, mean_ms=(p50 + p95) / 2, n=16), throughput_qps=qps,
            tokens=Tokens(prompt_mean=60 if baseline != "rag" else 210, answer_mean=4),
            one_off_seconds=one_off_s, one_off_cost_usd=one_off_usd, cost_per_1k_usd=per_1k,
            peak_memory_mb=mem, predictions_file=rel,
            config=TrialConfig(method="lora", params={"rank": 8, "alpha": 16, "learning_rate": 1e-3},
                               max_steps=60, max_seq_length=256) if baseline == "finetune" else None))
    return out


def make_study(interrupted: bool = False) -> Study:
    # number, method, state, params, val quality, cost, seconds, p95 ms, note
    spec = [
        (0, "lora", "COMPLETE", {"rank": 8, "alpha": 16, "learning_rate": 1e-3, "target_modules": "all-linear"},
         0.86, 0.34, 410, 250, None),
        (1, "dora", "COMPLETE", {"rank": 16, "alpha": 32, "learning_rate": 6e-4, "target_modules": "all-linear"},
         0.91, 0.52, 620, 265, None),
        (2, "ia3", "PRUNED", {"learning_rate": 3e-3}, None, 0.08, 95, None,
         "validation quality 0.22 at step 20, below the median of earlier trials (Hyperband)"),
        (3, "rslora", "COMPLETE", {"rank": 4, "alpha": 8, "learning_rate": 2e-3, "target_modules": "attention"},
         0.84, 0.21, 250, 248, None),
        (4, "full", "FAIL", {"learning_rate": 5e-5}, None, 0.02, 20, None,
         "CUDA out of memory <allocating 1.9 GiB>; retry with micro-batch 1 also failed"),
        (5, "prompt_tuning", "PRUNED", {"num_virtual_tokens": 20, "learning_rate": 3e-2}, None, 0.05, 60, None,
         "validation quality 0.05 at step 10 (Hyperband)"),
        (6, "lora", "COMPLETE", {"rank": 32, "alpha": 64, "learning_rate": 4e-4, "target_modules": "all-linear"},
         0.90, 0.61, 730, 252, None),
        (7, "loha", "COMPLETE", {"rank": 8, "alpha": 16, "learning_rate": 2e-3, "target_modules": "all-linear"},
         0.82, 0.44, 520, 270, None),
        (8, "lora", "COMPLETE", {"rank": 8, "alpha": 16, "learning_rate": 8e-4, "target_modules": "all-linear"},
         0.89, 0.30, 360, 249, None),
        (9, "vera", "PRUNED", {"rank": 256, "learning_rate": 1e-2}, None, 0.10, 120, None,
         "loss became NaN at step 15"),
    ]
    if interrupted:
        spec.append((10, "lora", "RUNNING", {"rank": 16, "alpha": 32, "learning_rate": 7e-4,
                                                "target_modules": "all-linear"}, None, None, None, None, None))
    trials = []
    for number, method, state, params, quality, cost, seconds, p95, note in spec:
        inter = {}
        if quality is not None:
            inter = {"10": quality - 0.25, "20": quality - 0.1, "30": quality}
        elif state == "PRUNED":
            inter = {"10": 0.05, "20": 0.22} if number == 2 else {"10": 0.05}
        trials.append(Trial(
            number=number, state=state, method=method, params={"method": method, **params},
            trainable_params=None if state == "RUNNING" else 460_800 * (params.get("rank", 1) or 1),
            estimated_train_seconds=None if seconds is None else seconds * 0.9, train_seconds=seconds,
            train_cost_usd=cost, peak_memory_mb=None if seconds is None else 1800 + (params.get("rank", 4) * 10),
            latency_p95_ms=p95, validation_quality=quality,
            eval_quality=0.9 if number == 8 else None, steps=None if quality is None else 60,
            intermediate=inter, note=note))
    # Pareto front over (quality up, training cost down, latency down) of finished trials
    done = [t for t in trials if t.state == "COMPLETE"]
    for t in done:
        t.pareto = not any(
            o is not t and o.validation_quality >= t.validation_quality and o.train_cost_usd <= t.train_cost_usd
            and o.latency_p95_ms <= t.latency_p95_ms
            and (o.validation_quality, o.train_cost_usd, o.latency_p95_ms)
            != (t.validation_quality, t.train_cost_usd, t.latency_p95_ms)
            for o in done)
    return Study(
        study_name="ticket-routing", storage="sqlite:///runs/ticket-routing/study.db",
        status="interrupted" if interrupted else "complete",
        sampler="TPESampler(multivariate=True, group=True, seed=7)", pruner="HyperbandPruner(min_resource=10)",
        trials=trials,
        excluded_methods={"bitfit": "SmolLM2 has no bias terms to train",
                          "qlora": "needs CUDA and bitsandbytes; this run is on CPU"},
        best_trial=8,
        selection_rule="best validation quality; among trials tied with it (paired bootstrap) the cheapest to train",
        importance={"learning_rate": 0.46, "method": 0.31, "rank": 0.15, "target_modules": 0.08},
        best_adapter_dir="adapters/trial-8", best_eval=Quality(mean=0.9, ci_low=0.8, ci_high=0.975, n=N_EVAL))


def make_results(run_dir: Path, *, study: bool = True, interrupted: bool = False, verdict: bool = True) -> Results:
    """Write predictions into ``run_dir`` and return (and save) the results."""
    run_dir = Path(run_dir)
    task = make_task()
    candidates = _candidates(run_dir)
    results = Results(
        advise_version="0.1.0",
        status="interrupted" if interrupted else "complete",
        created="2026-03-14T10:22:05+00:00",
        task=task.model_dump(mode="json"),
        environment={"python": "3.11.9", "platform": "Linux-6.1-x86_64", "device": "cpu", "cpu_count": 2,
                     "versions": {"torch": "2.13.0", "transformers": "5.1.0", "peft": "0.17.1", "trl": "1.0.2",
                                  "optuna": "4.4.0"},
                     "model": "SmolLM2-135M-Instruct (bundled)", "embedder": "all-MiniLM-L6-v2 (bundled)"},
        data={"formats": {"train": "question_answer", "eval": "question_answer"},
              "sizes": {"train": 204, "validation": 36, "eval": N_EVAL},
              "leakage": {"train_eval_duplicates": 1, "examples": ["My parcel has been stuck in transit for nine days."]}},
        candidates=candidates,
        verdict=decide(candidates, task) if verdict else None,
        study=make_study(interrupted) if study else None,
        timings={"load model": 3.2, "prompt-zero-shot": 41.0, "prompt-few-shot": 66.5, "index": 12.4,
                 "rag": 73.9, "finetune (train)": 412.0, "finetune (eval)": 39.8, "study": 3105.0},
    )
    save_results(results, run_dir)
    return results


if __name__ == "__main__":  # python tests/conftest_reports.py docs/
    import shutil
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from reports import write_html

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    with tempfile.TemporaryDirectory() as tmp:
        res = make_results(Path(tmp))
        html = write_html(res, Path(tmp))
        shutil.copy(html, out / "example-report.html")
        try:
            from reports.browser import check_report

            page = check_report(out / "example-report.html", screenshot=out / "example-report.png", max_height=2400)
            print(f"screenshot: {out / 'example-report.png'}; console errors: {len(page.errors)}")
        except Exception as e:  # no Chromium here: the HTML is still written
            print(f"no screenshot: {e}")
    print(out / "example-report.html")
