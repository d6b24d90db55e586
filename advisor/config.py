"""task.yaml: one typed, strictly validated model per section.

Errors name the file and the full key path (``task.yaml: data.train: file not found``);
unknown keys are rejected. Relative paths are resolved against the YAML file's folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from advisor.errors import AdviseError

RECORD_FORMATS = ("auto", "alpaca", "sharegpt", "messages", "prompt_completion", "question_answer", "columns")
KNOWLEDGE_CHANGE = ("never", "yearly", "quarterly", "monthly", "weekly", "daily")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ColumnMapping(Section):
    input: str = Field(description="Column holding the model input.")
    output: str = Field(description="Column holding the reference answer.")
    system: str | None = Field(None, description="Optional column with a per-record system prompt.")


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
    def _has_input(cls, v: str) -> str:
        if "{input}" not in v:
            raise ValueError("template must contain {input}")
        return v

    @field_validator("rag_template")
    @classmethod
    def _has_context(cls, v: str) -> str:
        if "{input}" not in v or "{context}" not in v:
            raise ValueError("rag_template must contain {input} and {context}")
        return v


class MetricConfig(Section):
    name: str = Field("exact_match", description="exact_match, token_f1, rouge_l, accuracy, contains, json, embedding_similarity.")
    labels: list[str] | None = Field(None, description="Label set for `accuracy`.")
    fields: list[str] | None = Field(None, description="Fields compared by `json` (all reference fields if unset).")

    @model_validator(mode="after")
    def _known(self):
        from advisor.metrics import METRICS

        if self.name not in METRICS:
            raise ValueError(f"unknown metric {self.name!r}; choose one of {', '.join(sorted(METRICS))}")
        if self.name == "accuracy" and not self.labels:
            raise ValueError("metric 'accuracy' needs `labels`")
        return self


class GenerationConfig(Section):
    max_new_tokens: int = Field(32, gt=0, le=4096, description="Answer length limit in tokens.")
    do_sample: bool = Field(False, description="Greedy decoding by default, for reproducible scores.")
    temperature: float = Field(1.0, gt=0)
    batch_size: int = Field(32, gt=0, description="Eval batch size for throughput (batch 32 measured 8.5x one-at-a-time on CPU, bench/results/generation.json).")
    latency_queries: int = Field(16, gt=0, description="Queries timed one at a time for latency p50/p95.")


class ConstraintsConfig(Section):
    latency_p95_ms: float | None = Field(None, gt=0, description="Reject candidates slower than this per query.")
    budget_usd: float | None = Field(None, ge=0, description="Largest acceptable one-off cost.")
    queries_per_month: int = Field(100_000, ge=0, description="Expected query volume.")
    horizon_months: float = Field(12, gt=0, description="Months over which total cost is compared.")
    hourly_price_usd: float | None = Field(None, ge=0, description="Price of one hour of the hardware; default by device.")
    knowledge_changes: Literal[KNOWLEDGE_CHANGE] = Field("never", description="How often the task's facts change.")  # type: ignore[valid-type]


class PromptBaselineConfig(Section):
    enabled: bool = True
    few_shot_k: int = Field(3, ge=0, le=32, description="Demonstrations for the few-shot candidate (0 = zero-shot only).")


class RagBaselineConfig(Section):
    enabled: bool = True
    chunk_tokens: int = Field(128, gt=8, description="Chunk size in embedder tokens.")
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
    enabled: bool = True
    max_steps: int = Field(60, gt=0, description="Upper bound on optimiser steps.")
    epochs: float = Field(3.0, gt=0, description="Upper bound on passes over train.")
    rank: int = Field(8, gt=0, description="LoRA rank.")
    alpha: int = Field(16, gt=0, description="LoRA alpha.")
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    batch_size: int = Field(8, gt=0)
    max_seq_length: int = Field(256, gt=8)
    target_modules: str = Field("all-linear", description="'all-linear' or comma-separated module names.")
    time_budget_s: float = Field(900, gt=0, description="Training stops after this many seconds.")


class BaselinesConfig(Section):
    prompt: PromptBaselineConfig = Field(default_factory=PromptBaselineConfig)
    rag: RagBaselineConfig = Field(default_factory=RagBaselineConfig)
    finetune: FinetuneBaselineConfig = Field(default_factory=FinetuneBaselineConfig)


    @model_validator(mode="after")
    def _at_least_one(self):
        if not (self.prompt.enabled or self.rag.enabled or self.finetune.enabled):
            raise ValueError("enable at least one of prompt, rag, finetune")
        return self


class VerdictConfig(Section):
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence of the paired bootstrap tests.")
    min_gain: float = Field(0.02, ge=0, description="Quality differences smaller than this count as ties.")
    bootstrap_samples: int = Field(2000, ge=200)


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


def _tune_error(kind: str, message: str, loc: tuple, value):
    """A validation error at a key below the validated field (``tune.search.<key>``)."""
    from pydantic_core import InitErrorDetails, PydanticCustomError

    return ValidationError.from_exception_data("TuneConfig", [InitErrorDetails(
        type=PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}")), loc=loc, input=value)])


class TuneConfig(Section):
    """The study that runs when fine-tuning wins, or with `advise tune`."""

    methods: list[str] | None = Field(None, description="Methods to search (default: all that apply).")
    n_trials: int = Field(12, gt=0, description="Trials in the whole study (finished or pruned), all workers together.")
    timeout_s: float | None = Field(None, gt=0, description="Wall-clock budget of this worker's search.")
    budget_usd: float | None = Field(None, gt=0, description="Money budget of the study (training and validation time).")
    max_steps: int = Field(60, gt=0, description="Steps per trial at most (Hyperband's max resource).")
    eval_every: int = Field(10, gt=0, description="Steps between validation reports to the pruner.")
    pruner: Literal["hyperband", "median", "none"] = "hyperband"
    storage: str | None = Field(None, description="Optuna storage URL; default SQLite in the run dir.")
    search: dict[str, TuneSearchOverride] = Field(default_factory=dict, description="Override ranges per hyperparameter.")
    memory_budget_gb: float | None = Field(None, gt=0, description="Memory a trial may use; default what the device has.")
    micro_batch_size: int = Field(8, gt=0, description="Largest per-step batch; bigger batches accumulate gradients.")
    max_seq_length: int = Field(256, gt=8, description="Training sequence length limit in tokens.")
    latency_queries: int = Field(4, gt=0, description="Validation queries timed one at a time per trial.")
    trial_timeout_s: float | None = Field(None, gt=0, description="Training time limit of one trial.")
    heartbeat_s: int = Field(60, gt=0, description="Running trials write a heartbeat this often; a silent one is failed.")
    max_retry: int = Field(2, ge=0, description="Times a trial interrupted by a crash or Ctrl-C is retried.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory on CUDA.")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v):
        if v is None:
            return v
        from tuner.methods import METHODS

        if not v:
            raise ValueError("give at least one method, or leave `methods` out for all")
        for i, name in enumerate(v):
            if name not in METHODS:
                raise _tune_error("unknown_method", f"unknown method {name!r}; choose from {', '.join(METHODS)}",
                                  (i,), name)
        if len(set(v)) != len(v):
            raise ValueError("a method is listed twice")
        return v

    @field_validator("search")
    @classmethod
    def _known_hyperparameters(cls, v):
        from tuner.space import check_search_key

        for key, override in v.items():
            problem = check_search_key(key, override)
            if problem:
                raise _tune_error("bad_search", problem, (key,), override.model_dump(exclude_none=True))
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

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Names the run directory.")
    model: str = Field("default", description="'default' (bundled SmolLM2-135M-Instruct), a hub id or a local path.")
    embedder: str = Field("default", description="'default' (bundled all-MiniLM-L6-v2), a hub id or a local path.")
    trust_remote_code: bool = False
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    metric: MetricConfig = Field(default_factory=MetricConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    # Set by load_task, not by the user.
    source_path: Path | None = Field(None, exclude=True)

    @property
    def base_dir(self) -> Path:
        return self.source_path.parent if self.source_path else Path.cwd()

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.output.dir) / self.name


def _yaml_type(value) -> str:
    return {dict: "a mapping", list: "a list", str: f"the text {value!r}", int: f"the number {value!r}",
            float: f"the number {value!r}", bool: f"{str(value).lower()}", type(None): "nothing"}.get(
        type(value), type(value).__name__)


def _key_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("__root__",)) or "(top level)"


def _format_error(err: dict) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown key '{err['loc'][-1]}'"
    if kind == "missing":
        return "required key is missing"
    got = type(err.get("input")).__name__
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys, got {_yaml_type(err.get('input'))}"
    if kind == "path_type":
        return f"expected a file path, got {_yaml_type(err.get('input'))}"
    if kind == "string_pattern_mismatch" and err["loc"] == ("name",):
        return "use letters, digits, '.', '_' and '-' only, starting with a letter or digit"
    if kind == "list_type":
        return f"expected a list, got {_yaml_type(err.get('input'))}"
    msg = err.get("msg", "invalid value")
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


class _DuplicateKey(Exception):
    def __init__(self, key, line, first):
        self.key, self.line, self.first = key, line, first


def _strict_loader():
    """A SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


_StrictLoader = None


def load_task(path: str | Path) -> TaskConfig:
    """Read and validate a task.yaml; every error is an AdviseError naming the file and key.

    >>> load_task("missing.yaml")
    Traceback (most recent call last):
    advisor.errors.AdviseError: missing.yaml: file not found
    """
    import yaml

    global _StrictLoader
    if _StrictLoader is None:
        _StrictLoader = _strict_loader()
    path = Path(path)
    shown = str(path)
    if not path.exists():
        raise AdviseError("file not found", file=shown)
    if path.is_dir():
        raise AdviseError("is a folder; give the task.yaml inside it", file=shown)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise AdviseError(f"not valid UTF-8 (byte {e.start})", file=shown, where=line) from None
    except OSError as e:
        raise AdviseError(f"cannot read: {e.strerror}", file=shown) from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKey as e:
        raise AdviseError(f"duplicate key '{e.key}' (first on line {e.first})", file=shown, where=e.line) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or "malformed YAML"
        raise AdviseError(f"malformed YAML: {problem}", file=shown, where=(mark.line + 1) if mark else None) from None
    if raw is None:
        raise AdviseError("the file is empty", file=shown)
    if not isinstance(raw, dict):
        raise AdviseError(f"the top level must be a mapping of keys, not a {type(raw).__name__}", file=shown)
    if "source_path" in raw:
        raise AdviseError("unknown key 'source_path'", file=shown, where="(top level)")
    try:
        task = TaskConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise AdviseError(_format_error(first), file=shown, where=_key_path(first["loc"])) from None
    task.source_path = path.resolve()
    _check_paths(task, shown)
    return task


def _check_paths(task: TaskConfig, shown: str) -> None:
    data = task.data
    from advisor.data import display_path

    for key in ("train", "eval", "file"):
        value = getattr(data, key)
        if value is None:
            continue
        full = task.resolve(value)
        if not full.exists():
            raise AdviseError(f"file not found: {display_path(full)}", file=shown, where=f"data.{key}")
        if full.is_dir():
            raise AdviseError(f"is a folder, not a data file: {display_path(full)}", file=shown, where=f"data.{key}")
    from advisor.models import resolve_embedder, resolve_model

    for key, resolve in (("model", resolve_model), ("embedder", resolve_embedder)):
        try:
            resolve(getattr(task, key), task.base_dir)
        except AdviseError as e:
            raise AdviseError(e.message, file=shown, where=key) from None
    for i, p in enumerate(task.corpus.paths):
        if not task.resolve(p).exists():
            raise AdviseError(f"not found: {display_path(task.resolve(p))}", file=shown, where=f"corpus.paths.{i}")
