"""The report's view model: everything the renderers show, already decided. Built by
``reports.build.build_report``, rendered by ``reports.terminal`` and ``reports.html``."""
from __future__ import annotations

from dataclasses import dataclass

from reports.format import ci_label


@dataclass(frozen=True)
class Figure:
    """One key figure at the top of the report: ``value`` is already formatted."""

    label: str
    value: str
    detail: str = ""


@dataclass(frozen=True)
class CandidateRow:
    name: str
    baseline: str
    kind: str
    fine_tuned: bool  # the verdict treats it as the last resort
    description: str
    quality: float
    ci_low: float
    ci_high: float
    n: int
    latency_p50_ms: float
    latency_p95_ms: float
    throughput_qps: float
    tokens_per_query: float
    cost_per_1k_usd: float
    monthly_cost_usd: float
    one_off_cost_usd: float
    one_off_seconds: float
    total_cost_usd: float
    peak_memory_mb: float
    winner: bool
    best_quality: bool
    status: str  # plain words: recommended / as good, costs more / significantly worse / ...
    diff_vs_best: float | None = None
    p_value: float | None = None
    violations: tuple[str, ...] = ()
    format_share: float | None = None  # answers in the metric's expected form (valid JSON, a label)
    second_metric: str = ""  # on preference data: the task's metric of the answers against the chosen ones
    paid_by_measurement: str = ""  # what the LLM judge or the distillation teacher billed for this option


@dataclass(frozen=True)
class Answer:
    candidate: str
    prediction: str
    score: float
    winner: bool


@dataclass(frozen=True)
class Example:
    index: int
    input: str
    reference: str
    answers: tuple[Answer, ...]
    why: str


@dataclass(frozen=True)
class QualityCostPoint:
    name: str
    cost_usd: float
    quality: float
    ci_low: float
    ci_high: float
    winner: bool


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # complete, pruned, failed, running, waiting
    method: str
    params: str
    quality: float | None  # validation quality: what the search optimised
    eval_quality: float | None
    train_cost_usd: float | None
    train_seconds: float | None
    estimated_train_seconds: float | None
    latency_p95_ms: float | None
    peak_memory_mb: float | None
    trainable_params: int | None
    steps: int | None
    pareto: bool
    best: bool
    note: str


@dataclass(frozen=True)
class HistoryPoint:
    number: int
    quality: float | None
    best_so_far: float | None
    state: str


@dataclass(frozen=True)
class MethodRow:
    method: str
    trials: int
    complete: int
    pruned: int
    failed: int
    best_quality: float | None
    excluded: bool
    reason: str


@dataclass(frozen=True)
class StudyView:
    name: str
    status: str
    interrupted: bool
    sampler: str
    pruner: str
    storage: str
    selection_rule: str
    counts: dict[str, int]
    best: TrialRow | None
    best_eval: tuple[float, float, float, int] | None  # mean, ci_low, ci_high, n on the eval split
    top_trials: tuple[TrialRow, ...]
    pareto: tuple[TrialRow, ...]
    trials: tuple[TrialRow, ...]
    methods: tuple[MethodRow, ...]
    importance: tuple[tuple[str, float], ...]
    history: tuple[HistoryPoint, ...]
    total_train_cost_usd: float
    total_train_seconds: float
    summary: str
    excluded_objectives: tuple[tuple[str, str], ...] = ()  # training objectives not searched, and why
    knowledge: str = ""  # cpt+sft next to SFT alone and RAG, when continued pre-training ran


@dataclass(frozen=True)
class Appendix:
    task_yaml: str
    data_formats: tuple[tuple[str, str], ...]
    data_sizes: tuple[tuple[str, int], ...]
    leakage_count: int | None
    leakage_examples: tuple[str, ...]
    data_other: tuple[tuple[str, str], ...]
    environment: tuple[tuple[str, str], ...]
    seeds: tuple[tuple[str, str], ...]
    timings: tuple[tuple[str, float], ...]
    total_seconds: float
    rule: str
    metric: str
    metric_description: str
    schema_version: int
    advise_version: str
    created: str


@dataclass(frozen=True)
class CurveView:
    """A pilot's learning curve: validation quality by step."""

    name: str
    points: tuple[tuple[int, float], ...]
    still_improving: bool
    extended_steps: int
    stopped: str
    cut_short: str = ""  # the pilot stopped before its planned steps: why, and after how many


@dataclass(frozen=True)
class StabilityRow:
    name: str
    wins: int
    low: float
    mean: float
    high: float


@dataclass(frozen=True)
class StabilityView:
    """``advise run --seeds N``: who won with each seed and how far each quality moved."""

    seeds: tuple[int, ...]
    stable: bool
    summary: str
    winners: tuple[str, ...]  # per seed, in order
    rows: tuple[StabilityRow, ...]


@dataclass(frozen=True)
class Report:
    """Everything the renderers show, already decided and formatted where it matters."""

    title: str
    task_name: str
    created: str
    status: str
    confidence: float  # of every interval shown (verdict.confidence)
    notices: tuple[str, ...]  # e.g. "the run was interrupted"; shown prominently
    headline: str
    recommendation: str  # the one-paragraph answer for a manager
    winner: str | None
    winner_kind: str | None
    reasons: tuple[str, ...]
    cautions: tuple[str, ...]
    figures: tuple[Figure, ...]
    metric: str
    metric_label: str
    queries_per_month: int
    horizon_months: float
    rows: tuple[CandidateRow, ...]
    quality_cost: tuple[QualityCostPoint, ...]
    examples: tuple[Example, ...]
    examples_differ: bool  # False when every option answered alike and the examples are just the first few
    examples_note: str
    study: StudyView | None
    appendix: Appendix
    curves: tuple[CurveView, ...] = ()
    stability: StabilityView | None = None
    data_kind: str = "sft"  # sft, preference (pairs) or unpaired: what the quality measures

    @property
    def ci_label(self) -> str:
        """"95% CI" at the task's confidence level."""
        return ci_label(self.confidence)
