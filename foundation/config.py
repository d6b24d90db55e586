"""task.yaml: one typed, strictly validated model per section.

Every number must be finite, every template must format, and unknown keys are rejected.
Reading the file and turning errors into one line naming the file and the key path is
``foundation.taskfile.load_task``; checks that need the data or the machine are in
``foundation.checks``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from foundation.yamltypes import type_problem

from foundation.compare_config import CompareModel, check_compare

RECORD_FORMATS = ("auto", "alpaca", "dolly", "sharegpt", "messages", "prompt_completion", "question_answer", "columns",
                  "preference", "sharegpt_preference", "openai_preference", "unpaired")
KNOWLEDGE_CHANGE = ("never", "yearly", "quarterly", "monthly", "weekly", "daily")


class Section(BaseModel):
    # inf and nan pass a `gt=0` check and then break costs, charts and results.json.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_coercion(cls, value, info):
        """A key takes its own type and nothing that pydantic's lax mode would turn into it: a
        boolean is true or false (not 1, "yes" or "true"), a number is a number (not "5" or
        true), a path or model id is plain text (not bytes from a YAML ``!!binary`` tag)."""
        problem = type_problem(cls.model_fields[info.field_name].annotation, value)
        if problem:
            raise ValueError(problem)
        return value


def check_template(template: str, fields: tuple[str, ...]) -> str | None:
    """Why ``template`` cannot be used, or None: it must use exactly ``fields`` as ``{name}``
    placeholders and format. ``'{{input}}'`` contains the text "{input}" but formats to a literal,
    so the model would never see the question; formatting it is the only reliable check.

    >>> check_template("Q: {input}", ("input",)) is None
    True
    >>> check_template("{{input}}", ("input",))
    'must contain the placeholder {input} (it formats to the text without it)'
    """
    import string

    try:
        parsed = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as e:  # a stray { or }
        return f"is not a valid template: {e} (write {{{{ or }}}} for a literal brace)"
    for name, spec, conv in parsed:
        if name not in fields:
            known = " and ".join("{" + f + "}" for f in fields)
            return f"unknown placeholder {{{name}}}; use {known} (write {{{{ or }}}} for a literal brace)"
        if spec or conv:
            written = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            return f"placeholder {written} takes no conversion or format spec; write {{{name}}}"
    marks = {f: f"\x00{f}\x00" for f in fields}
    try:
        text = template.format(**marks)
    except (ValueError, IndexError, KeyError, AttributeError) as e:
        return f"is not a valid template: {e}"
    for f in fields:
        if marks[f] not in text:
            return f"must contain the placeholder {{{f}}} (it formats to the text without it)"
    return None


class ColumnMapping(Section):
    input: str | list[str] = Field(description="Column holding the model input; a list of columns (a passage and "
                                               "the question) joins their texts with a blank line.")
    output: str = Field(description="Column holding the reference answer.")
    system: str | None = Field(None, description="Optional column with a per-record system prompt.")

    @field_validator("input", "output", "system")
    @classmethod
    def _names_a_column(cls, v):
        names = [v] if isinstance(v, str) or v is None else v
        if not names:
            raise ValueError("names no column: give a column name, or a list of them")
        if any(n is not None and not n.strip() for n in names):
            raise ValueError("a column name is empty")
        return v


class DataConfig(Section):
    train: Path | None = Field(None, description="Training records (jsonl, json, csv, parquet).")
    eval: Path | None = Field(None, description="Held-out evaluation records, never trained on.")
    file: Path | None = Field(None, description="One file to split into train and eval instead.")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Share of `file` held out for eval.")
    validation_fraction: float = Field(0.15, ge=0, lt=1, description="Share of train kept for validation (tuner).")
    format: Literal[RECORD_FORMATS] = Field("auto", description="Record format; auto-detected by default.")  # type: ignore[valid-type]
    columns: ColumnMapping | None = Field(None, description="Explicit input/output columns for any other layout.")
    max_train: int | None = Field(None, gt=0, description="Use at most this many training records.")
    max_eval: int | None = Field(None, gt=0, description="Use at most this many eval records.")

    @model_validator(mode="after")
    def _one_source(self):
        if self.file is not None and (self.train is not None or self.eval is not None):
            raise ValueError("give either `file` or `train` + `eval`, not both")
        if self.file is None and (self.train is None or self.eval is None):
            raise ValueError("give `train` and `eval` files, or one `file` with `eval_fraction`")
        if self.format == "columns" and self.columns is None:
            raise ValueError("format 'columns' needs a `columns` mapping")
        return self


class CorpusConfig(Section):
    paths: list[Path] = Field(default_factory=list, description="Files or folders (.md, .txt, .jsonl) for RAG.")
    jsonl_text_field: str = Field("text", description="Field holding the text in .jsonl corpus files.")


class PromptConfig(Section):
    system: str = Field("You are a helpful assistant. Answer briefly.", description="System prompt.")
    template: str = Field("{input}", description="User message; must contain {input}.")
    rag_template: str = Field(
        "Use the context to answer.\n\nContext:\n{context}\n\nQuestion: {input}",
        description="User message for RAG; must contain {input} and {context}.",
    )

    @field_validator("template")
    @classmethod
    def _formats_with_input(cls, v: str) -> str:
        problem = check_template(v, ("input",))
        if problem:
            raise ValueError(f"template {problem}")
        return v

    @field_validator("rag_template")
    @classmethod
    def _formats_with_context(cls, v: str) -> str:
        problem = check_template(v, ("input", "context"))
        if problem:
            raise ValueError(f"rag_template {problem}")
        return v

    def user_message(self, text: str) -> str:
        """The user turn for one input."""
        return self.template.format(input=text)


class MetricConfig(Section):
    name: str = Field("exact_match", description="exact_match, token_f1, rouge_l, accuracy, contains, json, embedding_similarity.")
    labels: list[str] | None = Field(None, description="Label set for `accuracy`.")
    fields: list[str] | None = Field(None, description="Fields compared by `json` (all reference fields if unset).")
    judge: str | None = Field(None, description="llm_judge: the compare: entry (by name) that grades answers.")
    rubric: str | None = Field(None, description="llm_judge: the grading instructions (a default rubric if unset).")

    @model_validator(mode="after")
    def _fits_the_metric(self):
        from foundation.metrics import METRICS, OPTION_KEYS

        metric = METRICS.get(self.name)
        if metric is None:
            raise ValueError(f"unknown metric {self.name!r}; choose one of {', '.join(sorted(METRICS))}")
        for key in OPTION_KEYS:
            value = getattr(self, key)
            if key in metric.required and not value:
                raise ValueError(f"metric {self.name!r} needs `{key}`")
            if value is not None and key not in metric.options:
                takers = [m.name for m in METRICS.values() if key in m.options]
                raise ValueError(f"`{key}` is only read by {', '.join(takers)}, not by {self.name!r}")
        if metric.check_options is not None:
            problem = metric.check_options(**{k: getattr(self, k) for k in metric.options})
            if problem:
                raise ValueError(problem)
        return self


class GenerationConfig(Section):
    max_new_tokens: int = Field(32, gt=0, le=4096, description="Answer length limit in tokens.")
    do_sample: bool = Field(False, description="Greedy decoding by default, for reproducible scores.")
    temperature: float = Field(1.0, gt=0, le=100, description="Sampling temperature (read only with do_sample).")
    batch_size: int = Field(32, gt=0, le=1024, description="Eval batch size for throughput (batch 32 measured 8.5x one-at-a-time on CPU, bench/results/generation.json).")
    latency_queries: int = Field(16, gt=0, le=1000, description="Queries timed one at a time for latency p50/p95.")


class ConstraintsConfig(Section):
    latency_p95_ms: float | None = Field(None, gt=0, description="Reject candidates slower than this per query.")
    budget_usd: float | None = Field(None, ge=0, description="Largest acceptable one-off cost.")
    queries_per_month: int = Field(100_000, ge=0, le=10**12, description="Expected query volume.")
    horizon_months: float = Field(12, gt=0, le=1200, description="Months over which total cost is compared.")
    hourly_price_usd: float | None = Field(None, ge=0, le=100_000, description="Price of one hour of the hardware; default by device.")
    knowledge_changes: Literal[KNOWLEDGE_CHANGE] = Field("never", description="How often the task's facts change.")  # type: ignore[valid-type]
    api_price_per_million_tokens: float | None = Field(None, ge=0, le=100_000, description=(
        "What a hosted API charges per million prompt tokens: prices the tokens a long prompt sends at the "
        "stated volume in the verdict's cautions."))


class PromptBaselineConfig(Section):
    enabled: bool = Field(True, description="Measure the zero-shot and few-shot candidates.")
    few_shot_k: int = Field(3, ge=0, le=32, description="Demonstrations for the few-shot candidate (0 = zero-shot only).")


class RagBaselineConfig(Section):
    enabled: bool = Field(True, description="Measure the RAG candidate.")
    chunk_tokens: int = Field(128, gt=8, le=8192, description="Chunk size in embedder tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by neighbouring chunks.")
    top_k: int = Field(3, gt=0, le=50, description="Chunks (or examples) put into the prompt.")
    index: Literal["auto", "flat", "hnsw"] = Field(
        "auto", description="FAISS index: exact 'flat', approximate 'hnsw', or 'auto' (HNSW from 20,000 chunks).")

    @model_validator(mode="after")
    def _overlap(self):
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        return self


class FinetuneBaselineConfig(Section):
    enabled: bool = Field(True, description="Measure the pilot LoRA fine-tune.")
    max_steps: int = Field(60, gt=0, le=1_000_000, description="Upper bound on optimiser steps.")
    epochs: float = Field(3.0, gt=0, le=1000, description="Upper bound on passes over train.")
    rank: int = Field(8, gt=0, le=4096, description="LoRA rank.")
    alpha: int = Field(16, gt=0, le=65536, description="LoRA alpha.")
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="Peak learning rate of the pilot.")
    batch_size: int = Field(8, gt=0, le=4096, description="Effective batch size of the pilot.")
    max_seq_length: int | None = Field(None, gt=8, le=1_048_576, description=(
        "Training tokens per record at most; unset: the longest formatted train record (up to 4096 and the "
        "model's context). Records longer than it lose the end of their answer."))
    target_modules: str = Field("all-linear", description="'all-linear', 'attention' or comma-separated module names.")
    time_budget_s: float = Field(3600, gt=0, description=(
        "Safety net in wall-clock seconds: training stops here even before max_steps. The pilot's budget is "
        "max_steps (and epochs), so a busy machine and a quiet one train the same steps; a pilot this stops "
        "says so in its learning curve and the verdict's cautions (steps done of planned)."))
    objective: str = Field("auto", description="Training objective of the pilot: auto (sft; sft+dpo on paired "
                           "preference data, sft+kto on unpaired data) or any tune objective.")
    max_extensions: int = Field(2, ge=0, le=100, description=(
        "Extra rounds of max_steps/2 steps while validation quality is still rising by more than "
        "verdict.min_gain and beyond noise (a sign test over the validation examples; 0: never extend)."))
    curve_records: int = Field(64, gt=0, le=10_000, description="Validation records scored for the learning curve.")

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, v: str) -> str:
        names = parse_target_modules(v)
        if not names:
            raise ValueError("give 'all-linear', 'attention' or comma-separated module names such as q_proj,v_proj")
        return v


def parse_target_modules(value: str) -> str | list[str]:
    """``all-linear`` and ``attention`` as they are; anything else as a list of module names.

    >>> parse_target_modules(" q_proj, v_proj ")
    ['q_proj', 'v_proj']
    """
    if value.strip() in ("all-linear", "attention"):
        return value.strip()
    return [m.strip() for m in value.split(",") if m.strip()]


class FinetuneRagBaselineConfig(Section):
    """The hybrid candidate: the pilot trained with retrieved context in its prompts (RAFT-style),
    answering with retrieval. Its training settings are baselines.finetune's; it runs when
    baselines.rag and baselines.finetune run too."""

    enabled: bool = Field(True, description="Measure the FT + RAG candidate (when rag and finetune run).")
    distractors: int = Field(1, ge=0, le=20, description="Random corpus chunks (or training examples) added to "
                             "each training prompt's retrieved context.")
    max_steps: int | None = Field(None, gt=0, le=1_000_000, description="Optimiser steps of the FT + RAG pilot at "
                                  "most (unset: baselines.finetune.max_steps); each carries the retrieved context.")


class BaselinesConfig(Section):
    prompt: PromptBaselineConfig = Field(default_factory=PromptBaselineConfig, description="Zero-shot and few-shot.")
    rag: RagBaselineConfig = Field(default_factory=RagBaselineConfig, description="Retrieval-augmented prompts.")
    finetune: FinetuneBaselineConfig = Field(default_factory=FinetuneBaselineConfig, description="The pilot fine-tune.")
    finetune_rag: FinetuneRagBaselineConfig = Field(default_factory=FinetuneRagBaselineConfig, description="FT + RAG.")

    @model_validator(mode="after")
    def _at_least_one(self):
        if not (self.prompt.enabled or self.rag.enabled or self.finetune.enabled):
            raise ValueError("enable at least one of prompt, rag, finetune")
        return self


class VerdictConfig(Section):
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence of the paired bootstrap tests.")
    min_gain: float = Field(0.02, ge=0, le=1, description="Quality differences smaller than this count as ties.")
    bootstrap_samples: int = Field(2000, ge=200, le=100_000, description="Bootstrap resamples.")


class OutputConfig(Section):
    dir: Path = Field(Path("runs"), description="Runs go to <dir>/<name>/.")


class TuneSearchOverride(Section):
    """A range (``low``/``high``) or a list of ``choices`` replacing a hyperparameter's default."""

    low: float | None = Field(None, description="Lower bound (keeps the default if unset).")
    high: float | None = Field(None, description="Upper bound (keeps the default if unset).")
    choices: list[float | int | str] | None = Field(None, description="Search only these values.")

    @model_validator(mode="after")
    def _one_kind(self):
        if self.choices is not None and (self.low is not None or self.high is not None):
            raise ValueError("give either `choices` or `low`/`high`, not both")
        if self.choices is None and self.low is None and self.high is None:
            raise ValueError("give `low`, `high` or `choices`")
        return self


class TuneConfig(Section):
    """The study that runs when fine-tuning wins, or with `advise tune`."""

    methods: list[str] | None = Field(None, description="Methods to search (default: all that apply).")
    objectives: list[str] | None = Field(None, description=(
        "Training objectives to search: sft, dpo, kto, orpo, simpo, grpo, rlhf, cpt+sft (default: every default "
        "one the data can feed; grpo, rlhf and cpt+sft are opt-in)."))
    n_trials: int = Field(12, gt=0, le=100_000, description="Trials in the whole study (finished or pruned), all workers together.")
    timeout_s: float | None = Field(None, gt=0, description="Wall-clock budget of this worker's search.")
    budget_usd: float | None = Field(None, gt=0, description="Money budget of the study (training and validation time).")
    max_steps: int = Field(60, gt=0, le=1_000_000, description="Steps per trial at most (Hyperband's max resource).")
    eval_every: int = Field(10, gt=0, description="Steps between validation reports to the pruner.")
    pruner: Literal["hyperband", "median", "none"] = Field("hyperband", description="Stops trials that are behind.")
    storage: str | None = Field(None, description="Optuna storage URL; default SQLite in the run dir.")
    search: dict[str, TuneSearchOverride] = Field(default_factory=dict, description="Override ranges per hyperparameter.")
    memory_budget_gb: float | None = Field(None, gt=0, description="Memory a trial may use; default what the device has.")
    micro_batch_size: int = Field(8, gt=0, le=4096, description="Largest per-step batch; bigger batches accumulate gradients.")
    max_seq_length: int | None = Field(None, gt=8, le=1_048_576, description=(
        "Training tokens per record at most; unset: derived from the data like baselines.finetune.max_seq_length."))
    latency_queries: int = Field(4, gt=0, le=1000, description="Validation queries timed one at a time per trial.")
    trial_timeout_s: float | None = Field(None, gt=0, description="Training time limit of one trial.")
    heartbeat_s: int = Field(60, gt=0, le=86_400, description="Running trials write a heartbeat this often; a silent one is failed.")
    max_retry: int = Field(2, ge=0, le=100, description="Times a trial interrupted by a crash or Ctrl-C is retried.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory on CUDA.")

    @field_validator("methods", "objectives")
    @classmethod
    def _some_methods(cls, v, info):
        # Which names exist is the tuner's registry's to say (training.methods.check_tune_section).
        if v is not None and not v:
            what = info.field_name.removesuffix("s")
            raise ValueError(f"give at least one {what}, or leave `{info.field_name}` out for all")
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"a{'n' if info.field_name[0] == 'o' else ''} {info.field_name.removesuffix('s')} is listed twice")
        return v

    @field_validator("storage")
    @classmethod
    def _url(cls, v):
        if v is not None and "://" not in v:
            raise ValueError("expected an Optuna storage URL such as sqlite:///study.db or postgresql://user@host/db")
        return v

    @model_validator(mode="after")
    def _steps(self):
        if self.eval_every > self.max_steps:
            raise ValueError(f"eval_every ({self.eval_every}) is larger than max_steps ({self.max_steps})")
        return self


class TaskConfig(Section):
    """A whole task.yaml."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=200, description="Names the run directory.")
    model: str = Field("default", description="'default' (bundled SmolLM2-135M-Instruct), a hub id or a local path.")
    embedder: str = Field("default", description="'default' (bundled all-MiniLM-L6-v2), a hub id or a local path.")
    trust_remote_code: bool = Field(False, description="Run the model's own code from the hub (off unless you say so).")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Splits, few-shot picks, training, bootstrap.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    data: DataConfig = Field(description="The train and eval records: two files, or one file to split.")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="Documents for RAG.")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="The system prompt and templates.")
    metric: MetricConfig = Field(default_factory=MetricConfig, description="How an answer is scored.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Decoding and timing.")
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig, description="What the verdict weighs.")
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig, description="The candidates measured.")
    verdict: VerdictConfig = Field(default_factory=VerdictConfig, description="The statistics of the rule.")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="The study when fine-tuning wins.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where runs are written.")
    compare: list[CompareModel] = Field(default_factory=list, description=(
        "Other models (OpenAI-compatible endpoints or local models) measured with the prompt and RAG candidates."))

    # Set by load_task, not by the user.
    source_path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _compare(self):
        check_compare(self)
        return self

    @property
    def base_dir(self) -> Path:
        return self.source_path.parent if self.source_path else Path.cwd()

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.output.dir) / self.name


