"""results.json: the versioned record of a run. Reports read only this file.

Bump ``SCHEMA_VERSION`` when a field changes meaning or is removed; adding optional fields
does not need a bump.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foundation.errors import AdviseError

SCHEMA_VERSION = 3


class Model(BaseModel):
    # An infinite cost (a candidate that answered nothing) must survive a save and a load:
    # pydantic writes it as null by default, which the float field then refuses.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class Quality(Model):
    mean: float
    ci_low: float
    ci_high: float
    n: int


class Latency(Model):
    p50_ms: float
    p95_ms: float
    mean_ms: float
    n: int


class Tokens(Model):
    prompt_mean: float
    answer_mean: float


class TrialConfig(Model):
    """One fine-tuning configuration: what the pilot trains and what each tuner trial samples.

    ``params`` holds the method's hyperparameters and the shared ones under their plain names
    (``rank``, ``learning_rate``, ``epochs``, ``batch_size``, ...), as ``training.space`` names them.
    """

    method: str = Field("lora", description="a training.methods entry")
    objective: str = Field("sft", description="the training objective")
    params: dict[str, float | int | str] = Field(default_factory=dict)
    max_steps: int = Field(description="optimiser steps at most")
    max_seq_length: int = Field(description="tokens per training record at most")
    time_budget_s: float | None = Field(None, description="training stops after this many seconds")


class CandidateResult(Model):
    """One measured candidate: e.g. ``prompt-zero-shot``, ``prompt-few-shot``, ``rag``, ``finetune``."""

    name: str
    baseline: str = Field(description="the baselines registry entry that measured it (prompt, rag, finetune)")
    model: str = Field("", description="the model that answered: the task's `model` (or empty), or a compare: entry's name")
    description: str
    details: dict[str, Any] = Field(default_factory=dict)
    quality: Quality
    scores: list[float] = Field(description="per-example scores in eval order")
    latency: Latency
    throughput_qps: float = Field(description="queries per second at the eval batch size")
    tokens: Tokens
    one_off_seconds: float = Field(0.0, description="measured set-up time: training or indexing")
    one_off_cost_usd: float = 0.0
    cost_per_1k_usd: float = Field(description="NaN when unpriced: an endpoint without prices (unknown, not free)")
    peak_memory_mb: float
    predictions_file: str
    config: TrialConfig | None = Field(None, description="the fine-tuning configuration that trained it")


class Comparison(Model):
    candidate: str
    diff_vs_best: float = Field(description="best mean minus this mean")
    diff_ci_low: float
    diff_ci_high: float
    p_value: float = Field(description="one-sided paired bootstrap p that the best is not better")
    significantly_worse: bool
    adequate: bool
    violations: list[str] = Field(default_factory=list)
    total_cost_usd: float


class Verdict(Model):
    recommendation: str = Field(description="the winning baseline: prompt, rag or finetune")
    winner: str = Field(description="the winning candidate's name")
    best_quality: str = Field(description="the candidate with the highest mean quality")
    finetune_wins: bool
    headline: str
    reasons: list[str]
    cautions: list[str] = Field(default_factory=list)
    comparisons: list[Comparison]
    rule: str


class SeedRun(Model):
    """One repetition of the measurement under ``--seeds``."""

    seed: int
    winner: str
    recommendation: str
    means: dict[str, float] = Field(description="each candidate's mean quality with this seed")


class Stability(Model):
    """How the verdict and each quality move when the seeds change (few-shot picks, training order,
    bootstrap); the eval split stays the same."""

    seeds: list[int]
    runs: list[SeedRun]
    wins: dict[str, int] = Field(description="candidate -> how many seeds it won")
    spread: dict[str, list[float]] = Field(description="candidate -> [min, mean, max] of its quality over the seeds")
    stable: bool = Field(description="the same candidate won with every seed")
    summary: str = Field(description="the sentence the verdict shows")


class Trial(Model):
    number: int
    state: str
    method: str
    objective: str = Field("sft", description="the training objective: sft, dpo, kto, orpo, simpo, grpo, ...")
    params: dict[str, Any]
    trainable_params: int | None = None
    estimated_train_seconds: float | None = None
    train_seconds: float | None = None
    train_cost_usd: float | None = None
    peak_memory_mb: float | None = None
    latency_p95_ms: float | None = None
    validation_quality: float | None = None
    eval_quality: float | None = None
    steps: int | None = None
    intermediate: dict[str, float] = Field(default_factory=dict)
    note: str | None = Field(None, description="why it was pruned or failed")
    pareto: bool = False
    trial_seconds: float | None = Field(None, description="wall time of the whole trial: load, train, validate, time")
    trial_cost_usd: float | None = Field(None, description="trial_seconds priced; counts against tune.budget_usd")
    validation_ci: list[float] | None = Field(None, description="95% bootstrap CI of validation_quality")
    settings: dict[str, Any] = Field(default_factory=dict, description="training settings used: micro-batch, ...")
    adapter_dir: str | None = Field(None, description="saved adapter (or model), relative to the run dir")
    retry_of: int | None = Field(None, description="the interrupted trial this one repeats")
    worker: str | None = Field(None, description="host:pid that ran it")
    phases: dict[str, float] = Field(default_factory=dict, description=(
        "seconds by phase: load_model, trainer_setup, optimizer_steps, validation, latency, save, other"))
    training: dict[str, Any] = Field(default_factory=dict, description=(
        "what the objective reports: its stages, a reward model's accuracy, rewards before and after"))


class Study(Model):
    study_name: str
    storage: str
    status: str = Field(description="complete or interrupted")
    sampler: str
    pruner: str
    trials: list[Trial]
    excluded_methods: dict[str, str] = Field(default_factory=dict, description="method -> why excluded")
    training_objectives: list[str] = Field(default_factory=lambda: ["sft"], description="the objectives searched")
    excluded_objectives: dict[str, str] = Field(default_factory=dict, description="objective -> why not searched")
    best_trial: int | None = None
    selection_rule: str = ""
    importance: dict[str, float] = Field(default_factory=dict)
    best_adapter_dir: str | None = None
    best_eval: Quality | None = None
    objectives: list[str] = Field(default_factory=list, description="what the Pareto front trades off")
    importance_evaluator: str | None = None
    stopped_reason: str | None = Field(None, description="why the search stopped: trials, time, money, Ctrl-C")
    notes: list[str] = Field(default_factory=list)
    flops_per_second: float | None = Field(None, description="measured matmul speed behind the time estimates")


class Results(Model):
    schema_version: int = SCHEMA_VERSION
    advise_version: str
    status: str = Field("complete", description="complete or interrupted")
    created: str
    task: dict[str, Any]
    environment: dict[str, Any]
    data: dict[str, Any]
    candidates: list[CandidateResult]
    verdict: Verdict | None = None
    stability: Stability | None = None
    study: Study | None = None
    timings: dict[str, float] = Field(default_factory=dict)

    def candidate(self, name: str) -> CandidateResult:
        return next(c for c in self.candidates if c.name == name)


    def finetuned_config(self) -> TrialConfig | None:
        """The configuration of the best-scoring fine-tuned candidate (the pilot), if one ran."""
        tuned = [c for c in self.candidates if c.config is not None]
        return max(tuned, key=lambda c: c.quality.mean).config if tuned else None


def save_results(results: Results, run_dir: Path) -> Path:
    """Write ``run_dir/results.json`` atomically: a crash never leaves half a file, and two writers
    never share a temporary file."""
    import os
    import uuid

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "results.json"
    tmp = run_dir / f".results.json.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(results.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:  # the user's path in the message, never the temporary file's
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _v1_to_v2(raw: dict) -> dict:
    """v1 kept the pilot's configuration as an untyped ``verdict.pilot_config`` (only when fine-tuning
    won); v2 keeps a typed ``config`` on every fine-tuned candidate."""
    verdict = raw.get("verdict")
    if isinstance(verdict, dict):
        verdict.pop("pilot_config", None)
    for c in raw["candidates"] if isinstance(raw.get("candidates"), list) else []:
        d = c.get("details") if isinstance(c, dict) else None
        if isinstance(d, dict) and c.get("baseline") == "finetune" and "learning_rate" in d:
            params = {k: d[k] for k in ("rank", "alpha", "learning_rate", "target_modules", "epochs", "batch_size")
                      if k in d}
            c["config"] = {"method": d.get("method", "lora"), "objective": "sft",
                           "params": {**params, "dropout": 0.0, "warmup_ratio": 0.0, "weight_decay": 0.0},
                           "max_steps": d.get("max_steps", 60), "max_seq_length": d.get("max_seq_length", 256)}
    raw["schema_version"] = 2
    return raw


def _v2_to_v3(raw: dict) -> dict:
    """v3 names the model that answered on every candidate (``compare:`` adds other models);
    every v2 candidate was answered by the task's own model."""
    task = raw.get("task")
    model = str(task.get("model", "default")) if isinstance(task, dict) else "default"  # a wrong task: the schema says so
    for c in raw["candidates"] if isinstance(raw.get("candidates"), list) else []:
        if isinstance(c, dict):
            c.setdefault("model", model)
    raw["schema_version"] = 3
    return raw


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3}  # schema_version -> the function that lifts it one version


def load_results(run_dir: str | Path) -> Results:
    run_dir = Path(run_dir)
    path = run_dir / "results.json" if run_dir.is_dir() else run_dir
    if not path.exists():
        raise AdviseError("no results.json here; run `advise run task.yaml` first", file=path)
    if not path.is_file():
        raise AdviseError("is not a file; results.json should be the file `advise run` wrote", file=path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))  # an editor's BOM is no reason to refuse it
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise AdviseError(f"not valid JSON: {str(e)[:200]}", file=path) from None
    except OSError as e:
        raise AdviseError(f"cannot read: {e.strerror}", file=path) from None
    if not isinstance(raw, dict):
        raise AdviseError(f"holds a JSON {type(raw).__name__ if raw is not None else 'null'}, not the object "
                          "`advise run` writes", file=path)
    version = raw.get("schema_version")
    while version in MIGRATIONS:
        raw = MIGRATIONS[version](raw)
        version = raw["schema_version"]
    if version != SCHEMA_VERSION:
        raise AdviseError(f"schema_version {version!r} is not supported (this advise reads {SCHEMA_VERSION})",
                          file=path, where="schema_version")
    try:
        return Results.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise AdviseError(f"does not match the results schema: {first['msg']}", file=path, where=where) from None
