"""The tuner: an Optuna study over PEFT method × rank × learning rate × the rest.

One straight line (``run_study``): inspect the model and drop the methods that do not apply
(with the reason), open or join the study, enqueue the pilot, run trials, then summarise:
Pareto front, the recommended trial, its held-out eval score, importance, CSV, best adapter.

Design choices, and why:

- **Single objective, three trade-offs.** Optuna prunes only single-objective studies, and
  pruning is what makes a search affordable, so the study maximises *validation quality*;
  training cost and latency are recorded on every trial and the Pareto front over
  (quality ↑, training cost ↓, latency p95 ↓) is computed from them afterwards.
- **Selection rule** (``SELECTION_RULE``): among finished trials within the constraints
  (``constraints.latency_p95_ms``, ``constraints.budget_usd``), those not significantly worse
  than the best on validation (paired bootstrap, ``verdict.confidence``) or within
  ``verdict.min_gain`` of it are tied; the cheapest to train among them is recommended.
  Its score on the eval split, which the search never sees, is the number reported.
- **Sampler and pruner.** Grouped multivariate TPE (each method's parameters form their own
  group), seeded; Hyperband over training steps by default. Validation quality is reported
  from a ``TrainerCallback`` every ``tune.eval_every`` steps, so pruned trials really stop.
- **Storage.** SQLite in the run directory by default (``optuna-dashboard
  sqlite:///runs/<name>/study.db``), any Optuna RDB URL otherwise. Running trials write a
  heartbeat; a trial whose worker died (``kill -9``) is failed when a worker next asks for a
  trial and retried (``RetryHeartbeatStaleTrialCallback``). A trial stopped by Ctrl-C is
  marked failed at once and retried by ``--resume``.
"""
from __future__ import annotations

import csv
import gc
import json
import math
import os
import shutil
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from advisor.errors import AdviseError
from advisor.progress import QUIET
from advisor.results import Quality, Study, Trial
from tuner.methods import METHODS, applicable, model_facts
from tuner.space import SHARED, SearchSpace, clean_params, micro_batches

SELECTION_RULE = ("best validation quality within the constraints; trials not significantly worse than it "
                  "(paired bootstrap, {conf:.0%}) or within {min_gain:g} of it are tied, and the cheapest of "
                  "them to train is recommended; its eval-split score is reported")
OBJECTIVES = ["validation quality (max)", "training cost (min)", "latency p95 (min)"]
EFFICIENCY = 0.5  # share of matmul peak that training reaches (FACTS: 1.7 s ideal vs 2.6–3.8 s measured)
FAILURES_IN_A_ROW = 3  # stop a search that only fails (a broken setup, not bad luck)


class TrialFailed(Exception):
    """A trial that cannot finish (out of memory at micro-batch 1, method not available here)."""


# ---------------------------------------------------------------- validation and pruning

@dataclass
class Evaluator:
    """Generates for a split with the task's prompt and scores it with the task's metric."""

    task: object
    tokenizer: object
    records: list
    embedder: object = None
    prompts: list = field(default_factory=list)

    def __post_init__(self):
        from advisor.generation import build_messages, render_prompt

        p = self.task.prompt
        self.prompts = [render_prompt(self.tokenizer, build_messages(r, p.system, p.template.format(input=r.input)))
                        for r in self.records]

    def texts(self, model) -> list[str]:
        from advisor.generation import generate

        side = self.tokenizer.padding_side
        was_training = model.training
        model.eval()
        try:
            return generate(model, self.tokenizer, self.prompts, self.task.generation).texts
        finally:
            self.tokenizer.padding_side = side
            if was_training:
                model.train()

    def scores(self, model) -> list[float]:
        from advisor.metrics import score_all

        m = self.task.metric
        return score_all(m.name, self.texts(model), [r.output for r in self.records], labels=m.labels,
                         fields=m.fields, embedder=self.embedder)

    def latency_ms(self, model, n: int) -> list[float]:
        from advisor.generation import generate, time_single_queries

        model.eval()
        return time_single_queries(
            lambda i: generate(model, self.tokenizer, [self.prompts[i]], self.task.generation, batch_size=1),
            list(range(len(self.prompts))), n)


def pruning_callback(trial, evaluate, eval_every: int):
    """A ``TrainerCallback`` reporting validation quality to ``trial`` every ``eval_every`` steps.

    It stops training when the pruner says so or when the loss (or gradient norm) stops being
    finite; the caller then raises ``optuna.TrialPruned`` with ``callback.reason``.
    """
    from transformers import TrainerCallback

    class ReportToTrial(TrainerCallback):
        def __init__(self):
            self.reason: str | None = None
            self.intermediate: dict[int, float] = {}
            self.eval_seconds = 0.0

        def on_log(self, args, state, control, logs=None, **kw):
            for key in ("loss", "grad_norm"):
                value = (logs or {}).get(key)
                if value is not None and not math.isfinite(value) and self.reason is None:
                    self.reason = f"{key.replace('_', ' ')} became {value} at step {state.global_step}"
                    control.should_training_stop = True

        def on_step_end(self, args, state, control, model=None, **kw):
            step = state.global_step
            if self.reason is not None or step % eval_every or step >= state.max_steps:
                return  # the last step is scored by the caller, with per-example scores
            t0 = time.perf_counter()
            value = evaluate(model)
            self.eval_seconds += time.perf_counter() - t0
            self.intermediate[step] = value
            trial.report(value, step)
            if trial.should_prune():
                self.reason = f"pruned at step {step}: validation quality {value:.3f} is behind other trials"
                control.should_training_stop = True

    return ReportToTrial()


# ---------------------------------------------------------------- time estimate

def measure_flops(device: str) -> float:
    """Sustained matmul FLOP/s of this device right now (fp32 on CPU, bf16 on CUDA)."""
    import torch

    cuda = device.startswith("cuda")
    n, reps = (4096, 20) if cuda else (1024, 4)
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    a @ a  # warm-up
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ a
    if cuda:
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def estimate_train_seconds(total_params: int, trainable_params: int, tokens_per_step: float, steps: int,
                           flops_per_second: float) -> float:
    """FLOPs-based training time before the run.

    Per token: forward 2N, backward through the activations 2N, weight gradients 2T (T
    trainable); full fine-tuning is the familiar 6N.

    >>> round(estimate_train_seconds(100, 100, 10, 1, 6000 * EFFICIENCY), 6)
    1.0
    """
    flops = (4 * total_params + 2 * trainable_params) * tokens_per_step * steps
    return flops / (flops_per_second * EFFICIENCY)


def mean_record_tokens(tokenizer, records, task, max_len: int) -> float:
    from advisor.generation import build_messages

    p = task.prompt
    lengths = []
    for r in records[:256]:
        msgs = build_messages(r, p.system, p.template.format(input=r.input)) + [
            {"role": "assistant", "content": r.output}]
        ids = tokenizer.apply_chat_template(msgs, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        lengths.append(min(len(ids), max_len))
    return sum(lengths) / max(1, len(lengths))


# ---------------------------------------------------------------- one trial

@dataclass
class StudyContext:
    """What every trial of one worker shares."""

    task: object
    splits: object
    run_dir: Path
    device: str
    source: object
    tokenizer: object
    facts: object
    space: SearchSpace
    local_excluded: dict
    validation: Evaluator
    price_per_hour: float
    flops_per_second: float
    tokens_per_record: float
    progress: object = QUIET


def _load_base(ctx: StudyContext, method):
    from advisor.models import load_model

    if method.load_base is not None:
        return method.load_base(ctx.source, ctx.device, ctx.task)
    return load_model(ctx.source, device=ctx.device, trust_remote_code=ctx.task.trust_remote_code, seed=ctx.task.seed)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def _free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def run_trial(trial, ctx: StudyContext) -> float:
    """Train one sampled configuration, reporting to the pruner; returns validation quality."""
    import optuna

    from advisor.resources import PeakMemory
    from advisor.stats import bootstrap_ci
    from tuner import training
    from tuner.training import TrainSettings, plan_steps

    started = time.perf_counter()
    task, tune = ctx.task, ctx.task.tune
    params = ctx.space.suggest(trial)
    method = METHODS[params["method"]]
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    same = _same_configuration(trial)
    if same is not None:  # TPE re-samples points of a discrete space; seeded training would repeat the result
        trial.set_user_attr("steps", 0)
        trial.set_user_attr("duplicate_of", same.number)
        trial.set_user_attr("note", f"same configuration as trial {same.number} "
                                    f"({same.state.name.lower()}): not trained again")
        raise optuna.TrialPruned()
    if method.name in ctx.local_excluded:
        raise TrialFailed(f"{method.name} does not apply on this worker: {ctx.local_excluded[method.name]}")
    micro, accum = micro_batches(params["batch_size"], tune.micro_batch_size)
    settings = TrainSettings(max_steps=tune.max_steps, epochs=params["epochs"], learning_rate=params["learning_rate"],
                             batch_size=micro, grad_accum=accum, max_seq_length=tune.max_seq_length,
                             warmup_ratio=params["warmup_ratio"], weight_decay=params["weight_decay"],
                             time_budget_s=tune.trial_timeout_s, seed=task.seed,
                             gradient_checkpointing=tune.gradient_checkpointing)
    steps = plan_steps(len(ctx.splits.train), settings)
    notes: list[str] = []
    evaluate = lambda model: sum(ctx.validation.scores(model)) / len(ctx.validation.records)  # noqa: E731
    desc = f"Trial {trial.number}: {method.name} " + ", ".join(
        f"{k}={_fmt(v)}" for k, v in params.items() if k != "method")
    while True:  # out of memory: halve the micro-batch, keep the effective batch with accumulation
        base = _load_base(ctx, method)
        adapter, init_dir = prepare_adapter(method, params, ctx.facts)
        callback = pruning_callback(trial, evaluate, tune.eval_every)
        trainer_dir = tempfile.mkdtemp(prefix="advise-trial-")
        settings.output_dir = trainer_dir
        try:
            with ctx.progress.task(desc[:110], total=steps) as advance, PeakMemory(ctx.device) as mem:
                if not notes:  # the estimate is made once, before the first attempt
                    trainable = _trainable_after(method, base, adapter)
                    tokens = ctx.tokens_per_record + params.get("num_virtual_tokens", 0)
                    estimate = estimate_train_seconds(ctx.facts.total_params, trainable, tokens * micro * accum, steps,
                                                      ctx.flops_per_second)
                    trial.set_user_attr("estimated_train_seconds", estimate)
                result = training.train_sft(base, ctx.tokenizer, ctx.splits.train, system=task.prompt.system,
                                            template=task.prompt.template, settings=settings, adapter=adapter,
                                            callbacks=[callback], device=ctx.device,
                                            on_step=lambda step, total: advance())
            break
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("note", "interrupted (Ctrl-C); `advise tune --resume` retries it")
            raise
        except Exception as e:
            if not _is_oom(e):
                raise
            del base, adapter
            _free_memory(ctx.device)
            if settings.batch_size == 1:
                raise TrialFailed("out of memory even at micro-batch 1: " + "; ".join(notes + [str(e)[:200]]))
            notes.append(f"out of memory at micro-batch {settings.batch_size}; retried at "
                         f"{settings.batch_size // 2} × {settings.grad_accum * 2} accumulation")
            settings.batch_size //= 2
            settings.grad_accum *= 2
        finally:
            shutil.rmtree(trainer_dir, ignore_errors=True)

    model = result.model
    train_seconds = max(0.0, result.train_seconds - callback.eval_seconds)
    attrs = {
        "trainable_params": result.trainable_params, "total_params": result.total_params, "steps": result.steps,
        "train_seconds": train_seconds, "train_cost_usd": train_seconds / 3600 * ctx.price_per_hour,
        "peak_memory_mb": mem.peak_mb, "final_loss": result.final_loss, "stopped": result.stopped_reason,
        "intermediate": {str(k): v for k, v in callback.intermediate.items()},
        "settings": {"micro_batch_size": settings.batch_size, "grad_accum": settings.grad_accum,
                     "planned_steps": steps, "max_seq_length": settings.max_seq_length, "device": ctx.device},
    }
    for k, v in attrs.items():
        trial.set_user_attr(k, v)

    def finish(note: str | None):
        seconds = time.perf_counter() - started
        trial.set_user_attr("trial_seconds", seconds)
        trial.set_user_attr("trial_cost_usd", seconds / 3600 * ctx.price_per_hour)
        if note or notes:
            trial.set_user_attr("note", "; ".join(notes + ([note] if note else [])))

    if callback.reason is not None:
        finish(callback.reason)
        raise optuna.TrialPruned(callback.reason)
    if result.final_loss is not None and not math.isfinite(result.final_loss):
        finish(f"loss became {result.final_loss} at step {result.steps}")
        raise optuna.TrialPruned(f"loss became {result.final_loss}")

    scores = ctx.validation.scores(model)
    quality, lo, hi = bootstrap_ci(scores, task.verdict.confidence, task.verdict.bootstrap_samples, task.seed)
    trial.report(quality, result.steps)
    latency = ctx.validation.latency_ms(model, tune.latency_queries)
    adapter_dir = ctx.run_dir / "adapters" / f"trial-{trial.number}"
    _save(method, model, adapter_dir, init_dir, trial, params, ctx)
    import numpy as np

    more = {"validation_quality": quality, "validation_ci": [lo, hi], "validation_scores": scores,
            "latency_p50_ms": float(np.percentile(latency, 50)), "latency_p95_ms": float(np.percentile(latency, 95)),
            "adapter_dir": str(adapter_dir.relative_to(ctx.run_dir))}
    for k, v in more.items():
        trial.set_user_attr(k, v)
    finish(None)
    del model, result
    _free_memory(ctx.device)
    return quality


def _same_configuration(trial):
    """An earlier finished (complete or pruned) trial with exactly these parameters, if any.
    Retries of failed or interrupted trials have no finished twin, so they still run."""
    from optuna.trial import TrialState

    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.number != trial.number and t.params == trial.params and "duplicate_of" not in t.user_attrs:
            return t
    return None


def objective(trial, ctx: StudyContext) -> float:
    """``run_trial`` with the reason of any failure recorded on the trial, for results.json."""
    import optuna

    try:
        return run_trial(trial, ctx)
    except (optuna.TrialPruned, KeyboardInterrupt):
        raise
    except Exception as e:
        if "note" not in trial.user_attrs:
            first = (str(e).strip().splitlines() or [""])[0][:300]
            trial.set_user_attr("note", first if isinstance(e, TrialFailed) else f"{type(e).__name__}: {first}")
        raise


def _fmt(v) -> str:
    return f"{v:.2g}" if isinstance(v, float) else str(v)


def _trainable_after(method, base, adapter) -> int:
    """Trainable parameters the method will have, counted without touching ``base``."""
    if method.name == "bitfit":
        return sum(p.numel() for n, p in base.named_parameters() if n.endswith("bias"))
    if method.full_model:
        return sum(p.numel() for p in base.parameters())
    import copy

    import torch
    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if not isinstance(adapter, PeftConfig):
        return 0
    try:
        with torch.device("meta"):  # the same architecture without allocating weights
            shadow = AutoModelForCausalLM.from_config(base.config)
            cfg = copy.deepcopy(adapter)
            if getattr(cfg, "init_lora_weights", True) not in (True, False):
                cfg.init_lora_weights = True  # PiSSA's SVD cannot run on meta tensors
            peft_model = get_peft_model(shadow, cfg)
        return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    except Exception:  # an estimate only: unknown beats a crashed trial
        return 0


def prepare_adapter(method, params: dict, facts):
    """(what train_sft's ``adapter`` takes, the initial-adapter folder or None) for a method."""
    adapter = method.build(params, facts)
    if method.save is not None:  # e.g. PiSSA: keep the initial adapter to convert at save time
        return _keep_initial(adapter)
    return adapter, None


def save_trained(method, model, out: Path, init_dir=None) -> None:
    """A trained model in standard PEFT format (or whole, for BitFit and full fine-tuning)."""
    if method.save is not None and init_dir is not None:
        method.save(model, out, init_dir)
        shutil.rmtree(init_dir, ignore_errors=True)
    else:
        model.save_pretrained(out)


def _keep_initial(adapter):
    """Wrap a PEFT config so the initial adapter is saved (PiSSA converts against it later)."""
    from peft import get_peft_model

    init_dir = Path(tempfile.mkdtemp(prefix="advise-init-"))

    def prepare(model):
        peft_model = get_peft_model(model, adapter)
        peft_model.peft_config["default"].init_lora_weights = True  # reload the init as plain LoRA
        peft_model.save_pretrained(init_dir)
        peft_model.peft_config["default"].init_lora_weights = adapter.init_lora_weights
        return peft_model

    return prepare, init_dir


def _save(method, model, out: Path, init_dir, trial, params, ctx) -> None:
    """The trial's adapter in standard PEFT format (or the whole model for BitFit / full FT)."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_trained(method, model, tmp, init_dir)
    if method.full_model:
        ctx.tokenizer.save_pretrained(tmp)
    meta = {"trial": trial.number, "study": ctx.task.name, "method": method.name, "params": params,
            "full_model": method.full_model, "mergeable": method.mergeable, "model": ctx.task.model,
            "base_dir": str(ctx.task.base_dir), "seed": ctx.task.seed,
            "trust_remote_code": ctx.task.trust_remote_code, "system": ctx.task.prompt.system,
            "template": ctx.task.prompt.template}
    (tmp / "advise_trial.json").write_text(json.dumps(meta, indent=2))
    _replace_dir(tmp, out)


def _replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.replace(dst, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(src, dst)


# ---------------------------------------------------------------- the study

def driver_url(url: str) -> str:
    """Pick an installed PostgreSQL driver: SQLAlchemy 2.1 defaults ``postgresql://`` to psycopg 3.

    >>> driver_url("sqlite:///study.db")
    'sqlite:///study.db'
    """
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _storage(url: str, tune):
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = driver_url(url)

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(6):
        try:
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=tune.heartbeat_s,
                              grace_period=2 * tune.heartbeat_s,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=tune.max_retry))
        except Exception as e:
            # Workers starting together on a fresh database race to create Optuna's tables;
            # the loser sees a duplicate-key error and finds the tables there on the next try.
            if attempt < 5 and any(s in str(e) for s in ("duplicate key", "already exists", "database is locked")):
                time.sleep(0.5 + attempt)
                continue
            raise AdviseError(f"cannot open the study storage {_hide_password(url)}: {str(e).splitlines()[0]}",
                              where="tune.storage") from None


def _hide_password(url: str) -> str:
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _pruner(tune):
    import optuna

    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=tune.eval_every, max_resource=tune.max_steps,
                                              reduction_factor=3)
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=tune.eval_every - 1)
    return optuna.pruners.NopPruner()


def _describe(obj) -> str:
    name = type(obj).__name__
    if name == "TPESampler":
        return f"TPESampler(multivariate=True, group=True, constant_liar=True, seed={getattr(obj, 'advise_seed', None)})"
    if name == "HyperbandPruner":
        return f"HyperbandPruner(min_resource={obj._min_resource}, max_resource={obj._max_resource}, reduction_factor=3)"
    if name == "MedianPruner":
        return f"MedianPruner(n_startup_trials={obj._n_startup_trials}, n_warmup_steps={obj._n_warmup_steps})"
    return f"{name}()"


def pilot_params(pilot_config: dict, space: SearchSpace) -> dict | None:
    """The pilot fine-tune's configuration as trial parameters (None if its method is not searched)."""
    if pilot_config.get("method", "lora") not in space.methods:
        return None
    name = pilot_config.get("method", "lora")
    targets = pilot_config.get("target_modules", "all-linear")
    if targets != "all-linear":
        attention = {"q_proj", "k_proj", "v_proj", "o_proj"}
        targets = "attention" if set(m.strip() for m in str(targets).split(",")) <= attention else "all-linear"
    clean = {"method": name, "rank": pilot_config.get("rank"), "alpha": pilot_config.get("alpha"),
             "learning_rate": pilot_config.get("learning_rate"), "dropout": pilot_config.get("dropout", 0.0),
             "target_modules": targets, "epochs": pilot_config.get("epochs"),
             "batch_size": pilot_config.get("batch_size"), "warmup_ratio": 0.0, "weight_decay": 0.0}
    for hp in space.methods[name].hyperparameters:
        choices = space.spec(name, hp).choices
        if choices and hp.name in clean and clean[hp.name] not in choices:
            clean.pop(hp.name)  # the user narrowed the choices; let the sampler pick
    return space.optuna_params({k: v for k, v in clean.items() if v is not None})


def _enqueue_retries(study, tune) -> int:
    """Re-enqueue trials stopped by Ctrl-C (heartbeat-stale ones are re-enqueued by Optuna)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    n = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in retried:
            depth = t.user_attrs.get("retry_depth", 0)
            if depth < tune.max_retry:
                study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retry_depth": depth + 1})
                n += 1
    return n


def _check_same_search(study, tune, url: str, task_file=None) -> None:
    """A study's distributions are fixed by the ``tune.search`` it started with: resuming or joining
    it with other ranges would fail trial after trial, so say so once, before anything runs."""
    from advisor.data import display_path

    current = {k: v.model_dump(exclude_none=True) for k, v in sorted(tune.search.items())}
    stored = study.user_attrs.get("search")
    if stored is None:
        study.set_user_attr("search", current)
        return
    changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if changed:
        raise AdviseError(
            f"the study in {_hide_password(url)} was started with other tune.search ranges "
            f"(changed: {', '.join(changed)}); put them back in task.yaml to continue it, or run "
            "`advise tune` without --resume to start a new study", file=display_path(task_file) if task_file else None,
            where="tune.search")


def run_study(task, splits, *, run_dir: Path, progress=QUIET, pilot: dict | None = None, storage: str | None = None,
              n_trials: int | None = None, resume: bool = False, enqueue: list[dict] | None = None) -> Study:
    """Run (or resume, or join) the study for ``task``; returns the summary stored in results.json.

    ``n_trials`` caps this worker's trials (``advise tune --n-trials``); the study as a whole
    stops at ``tune.n_trials`` finished or pruned trials, ``tune.timeout_s`` or ``tune.budget_usd``.
    A fresh study runs the pilot's configuration first, then the ``enqueue`` configurations
    (clean parameters, e.g. ``{"method": "lora", "learning_rate": 1e-6}``), then sampled ones.
    """
    import optuna
    from optuna.trial import TrialState

    from advisor.measure import hourly_price
    from advisor.models import load_model, load_tokenizer, pick_device, resolve_model

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial's outcome is logged by _log_trial
    tune = task.tune
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(task.device)
    source = resolve_model(task.model, task.base_dir)
    tokenizer = load_tokenizer(source, task.trust_remote_code)
    base = load_model(source, device=device, trust_remote_code=task.trust_remote_code, seed=task.seed)
    facts = model_facts(base, device, tune.memory_budget_gb)
    del base
    methods, excluded = applicable(tune.methods, facts)
    if not methods:
        raise AdviseError("no fine-tuning method applies here: " + "; ".join(f"{k}: {v}" for k, v in excluded.items()),
                          where="tune.methods")

    explicit = storage or tune.storage
    url = explicit or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    notes: list[str] = []
    if not explicit and not resume and (run_dir / "study.db").exists():
        os.replace(run_dir / "study.db", run_dir / "study.db.prev")
        notes.append("a previous study.db was moved to study.db.prev (use --resume to continue a study)")
    rdb = _storage(url, tune)
    study = optuna.create_study(study_name=task.name, storage=rdb, direction="maximize", load_if_exists=True,
                                pruner=_pruner(tune))
    # Categorical choices must not change within a study: the first worker fixes the methods.
    stored = study.user_attrs.get("methods")
    if stored is None:
        study.set_user_attr("methods", [m.name for m in methods])
        study.set_user_attr("excluded_methods", excluded)
        stored = [m.name for m in methods]
    _check_same_search(study, tune, url, task.source_path)
    if set(stored) != {m.name for m in methods}:
        notes.append(f"the study searches {', '.join(stored)} as fixed when it started; this worker's tune.methods "
                     "or hardware would give a different set (start a new study to change it)")
    local_excluded = {name: reason for name, reason in excluded.items() if name in stored}
    space = SearchSpace([METHODS[name] for name in stored], tune.search)
    existing = study.get_trials(deepcopy=False)
    # A fresh single-worker study is reproducible from task.seed; a resumed or shared one must
    # not replay the same random start-up samples as the other workers.
    seed = task.seed + len(existing) + ((os.getpid() % 100_003) if explicit else 0)
    study.sampler = optuna.samplers.TPESampler(group=True, seed=seed, constant_liar=True,
                                               n_startup_trials=min(10, max(2, tune.n_trials // 3)))
    study.sampler.advise_seed = seed
    if pilot and not existing:
        params = pilot_params(pilot.get("config") or {}, space)
        if params is not None:
            study.enqueue_trial(params, user_attrs={"origin": "pilot"})
    for clean in (enqueue or []) if not existing else []:
        study.enqueue_trial(space.optuna_params(clean), user_attrs={"origin": "enqueued"})
    retried = _enqueue_retries(study, tune) if existing else 0
    if retried:
        notes.append(f"re-enqueued {retried} trial(s) interrupted by Ctrl-C")

    validation_records = splits.validation
    if not validation_records:
        validation_records = splits.train
        notes.append("no validation split (fewer than 10 train records or data.validation_fraction is 0): "
                     "trials were selected on train, so the validation numbers are optimistic")
    embedder = _embedder(task, device)
    ctx = StudyContext(task=task, splits=splits, run_dir=run_dir, device=device, source=source, tokenizer=tokenizer,
                       facts=facts, space=space, local_excluded=local_excluded,
                       validation=Evaluator(task, tokenizer, validation_records, embedder),
                       price_per_hour=hourly_price(task, device), flops_per_second=measure_flops(device),
                       tokens_per_record=mean_record_tokens(tokenizer, splits.train, task, tune.max_seq_length),
                       progress=progress)

    stop = {"reason": None}
    callbacks = [_log_trial(progress), _budget_callback(tune, stop), _failures_callback(stop)]
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in existing)
    status = "complete"
    if done >= tune.n_trials:
        stop["reason"] = f"the study already has {done} finished trials (tune.n_trials is {tune.n_trials})"
    else:
        callbacks.append(optuna.study.MaxTrialsCallback(tune.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        # Without --n-trials a worker runs until the study's budget; failures are bounded separately.
        worker_trials = n_trials if n_trials is not None else (tune.n_trials - done) + tune.max_retry + 2
        try:
            study.optimize(lambda trial: objective(trial, ctx), n_trials=worker_trials, timeout=tune.timeout_s,
                           callbacks=callbacks, catch=(Exception,), gc_after_trial=True)
        except KeyboardInterrupt:
            status = "interrupted"
            stop["reason"] = "interrupted (Ctrl-C); `advise tune --resume` continues the study"
        if stop["reason"] is None:
            n = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))
            stop["reason"] = (f"the study reached tune.n_trials ({tune.n_trials})" if n >= tune.n_trials
                              else "this worker's trials (--n-trials) or tune.timeout_s ran out")
    return summarize(study, task, splits, run_dir=run_dir, storage_url=url, excluded=excluded, status=status,
                     stopped_reason=stop["reason"], notes=notes, ctx=ctx, progress=progress)


def _embedder(task, device):
    from advisor.metrics import METRICS

    if not METRICS[task.metric.name].needs_embedder:
        return None
    from advisor.models import load_embedder, resolve_embedder

    return load_embedder(resolve_embedder(task.embedder, task.base_dir), device)


def _log_trial(progress):
    def log(study, trial):
        t = result_trial(trial)
        quality = f", validation {t.validation_quality:.3f}" if t.validation_quality is not None else ""
        seconds = f", {t.trial_seconds:.0f} s" if t.trial_seconds is not None else ""
        note = f" ({t.note})" if t.note else ""
        progress.log(f"trial {t.number} {t.method}: {t.state}{quality}{seconds}{note}")

    return log


def _budget_callback(tune, stop):
    def check(study, trial):
        if tune.budget_usd is None:
            return
        spent = sum(t.user_attrs.get("trial_cost_usd", 0.0) for t in study.get_trials(deepcopy=False))
        if spent >= tune.budget_usd:
            stop["reason"] = f"money budget spent: ${spent:.2f} of tune.budget_usd ${tune.budget_usd:.2f}"
            study.stop()

    return check


def _failures_callback(stop):
    from optuna.trial import TrialState

    def check(study, trial):
        trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        last = trials[-FAILURES_IN_A_ROW:]
        if len(last) == FAILURES_IN_A_ROW and all(t.state == TrialState.FAIL for t in last):
            stop["reason"] = (f"{FAILURES_IN_A_ROW} trials in a row failed; the last: "
                              f"{last[-1].user_attrs.get('note', 'no reason recorded')}")
            study.stop()

    return check


# ---------------------------------------------------------------- summary

_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def result_trial(t) -> Trial:
    """An Optuna FrozenTrial as the Trial stored in results.json."""
    u = t.user_attrs
    params = clean_params(t.params)
    note = u.get("note")
    if t.state.name == "FAIL" and note is None:
        note = t.system_attrs.get("fail_reason") or "failed (its worker stopped sending heartbeats)"
    intermediate = {str(k): float(v) for k, v in t.intermediate_values.items()}
    retry_of = u.get("retry_of", t.system_attrs.get("failed_trial"))
    return Trial(
        number=t.number, state=_STATES.get(t.state.name, t.state.name.lower()), method=params.get("method", "?"),
        params=params, trainable_params=u.get("trainable_params"),
        estimated_train_seconds=u.get("estimated_train_seconds"), train_seconds=u.get("train_seconds"),
        train_cost_usd=u.get("train_cost_usd"), peak_memory_mb=u.get("peak_memory_mb"),
        latency_p95_ms=u.get("latency_p95_ms"), validation_quality=u.get("validation_quality"),
        steps=u.get("steps"), intermediate=intermediate, note=note, trial_seconds=u.get("trial_seconds"),
        trial_cost_usd=u.get("trial_cost_usd"), validation_ci=u.get("validation_ci"), settings=u.get("settings", {}),
        adapter_dir=u.get("adapter_dir"), retry_of=retry_of, worker=u.get("worker"))


def pareto_front(trials: list[Trial]) -> set[int]:
    """Numbers of the finished trials no other trial beats on all of quality ↑, cost ↓, latency ↓."""
    done = [t for t in trials if t.state == "complete" and t.validation_quality is not None]

    def key(t):
        return (t.validation_quality, -(t.train_cost_usd or 0.0), -(t.latency_p95_ms or 0.0))

    front = set()
    for t in done:
        a = key(t)
        if not any(all(x >= y for x, y in zip(key(o), a)) and key(o) != a for o in done if o is not t):
            front.add(t.number)
    return front


def select_trial(trials: list[Trial], scores: dict[int, list[float]], task) -> tuple[int | None, list[str]]:
    """The recommended trial under ``SELECTION_RULE``, and notes on how it was chosen."""
    from advisor.stats import paired_bootstrap

    done = [t for t in trials if t.state == "complete" and t.validation_quality is not None]
    if not done:
        return None, ["no trial finished, so nothing is recommended"]
    cons, vc = task.constraints, task.verdict
    notes = []

    def fits(t):
        if cons.latency_p95_ms is not None and (t.latency_p95_ms or 0) > cons.latency_p95_ms:
            return False
        return cons.budget_usd is None or (t.train_cost_usd or 0) <= cons.budget_usd

    feasible = [t for t in done if fits(t)]
    if not feasible:
        notes.append("no finished trial meets the constraints (latency p95, budget); chose among all of them")
        feasible = done
    best = max(feasible, key=lambda t: (t.validation_quality, -(t.train_cost_usd or 0.0), -t.number))
    tied = []
    for t in feasible:
        if t is best:
            tied.append(t)
            continue
        a, b = scores.get(best.number), scores.get(t.number)
        diff = best.validation_quality - t.validation_quality
        worse = (paired_bootstrap(a, b, vc.confidence, vc.bootstrap_samples, task.seed)["ci_low"] > 0
                 if a and b and len(a) == len(b) else diff > 0)
        if not worse or diff <= vc.min_gain:
            tied.append(t)
    pick = min(tied, key=lambda t: (t.train_cost_usd or 0.0, t.latency_p95_ms or 0.0, -t.validation_quality, t.number))
    if pick is not best:
        notes.append(f"trial {pick.number} is tied with the best-scoring trial {best.number} "
                     f"({pick.validation_quality:.3f} vs {best.validation_quality:.3f} on validation) and cheaper to train")
    return pick.number, notes


def importance(study) -> tuple[dict[str, float], str | None]:
    """Hyperparameter importance (PED-ANOVA), the 12 largest non-zero values.

    Measured on a 60-trial study over the whole space (2 busy CPU cores): PED-ANOVA 21 ms,
    fANOVA 968 ms. PED-ANOVA also ranks method-specific parameters (``lora.learning_rate``,
    the true driver of that synthetic objective), where fANOVA sees only the parameters
    every trial shares and credited ``method`` instead.
    """
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(done) < 3:
        return {}, None
    import optuna.importance  # slow to import (fANOVA's forest): only when there is something to rank
    from optuna.importance import PedAnovaImportanceEvaluator
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except Exception:  # too few distinct values and the like: importance is a nicety
        return {}, None
    top = sorted(((k, float(v)) for k, v in values.items() if v > 0), key=lambda kv: -kv[1])[:12]
    return dict(top), "PedAnovaImportanceEvaluator"


def summarize(study, task, splits, *, run_dir: Path, storage_url: str, excluded: dict, status: str,
              stopped_reason: str | None, notes: list[str], ctx: StudyContext | None = None, progress=QUIET) -> Study:
    """Build the results.json summary; evaluate the recommended trial on the eval split once."""
    frozen = study.get_trials(deepcopy=False)
    trials = [result_trial(t) for t in frozen]
    front = pareto_front(trials)
    for t in trials:
        t.pareto = t.number in front
    scores = {t.number: t.user_attrs.get("validation_scores") for t in frozen}
    best, how = select_trial(trials, scores, task)
    notes = notes + how
    imp, evaluator = importance(study)
    summary = Study(study_name=study.study_name, storage=_hide_password(storage_url), status=status,
                    sampler=_describe(study.sampler), pruner=_describe(study.pruner), trials=trials,
                    excluded_methods=dict(study.user_attrs.get("excluded_methods", excluded)), best_trial=best,
                    selection_rule=SELECTION_RULE.format(conf=task.verdict.confidence, min_gain=task.verdict.min_gain),
                    importance=imp, importance_evaluator=evaluator, objectives=OBJECTIVES,
                    stopped_reason=stopped_reason, notes=notes,
                    flops_per_second=ctx.flops_per_second if ctx else None)
    if best is not None:
        chosen = next(t for t in trials if t.number == best)
        source_dir = run_dir / (chosen.adapter_dir or f"adapters/trial-{best}")
        best_dir = run_dir / "adapters" / "best"
        if source_dir.exists():
            tmp = best_dir.parent / f".best.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source_dir, tmp)
            _replace_dir(tmp, best_dir)
            summary.best_adapter_dir = str(best_dir.relative_to(run_dir))
            quality = evaluate_on_eval(best_dir, task, splits, run_dir, ctx, progress)
            summary.best_eval = quality
            chosen.eval_quality = quality.mean
        else:
            summary.notes.append(f"trial {best}'s adapter is not in this run directory (it ran on "
                                 f"{chosen.worker or 'another worker'}); run `advise tune --resume` there or share "
                                 "output.dir between workers to evaluate and export it")
    write_trials_csv(trials, run_dir / "trials.csv")
    return summary


def evaluate_on_eval(adapter_dir: Path, task, splits, run_dir: Path, ctx: StudyContext | None, progress=QUIET) -> Quality:
    """The recommended trial's score on the held-out eval split (cached next to the adapter)."""
    from advisor.measure import write_predictions
    from advisor.stats import bootstrap_ci

    meta = json.loads((adapter_dir / "advise_trial.json").read_text())
    cache = adapter_dir / "advise_eval.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("trial") == meta["trial"] and cached.get("n") == len(splits.eval):
            return Quality(**cached["quality"])
    model, tokenizer = load_trained(adapter_dir, ctx.device if ctx else None, ctx.tokenizer if ctx else None)
    evaluator = Evaluator(task, tokenizer, splits.eval, ctx.validation.embedder if ctx else _embedder(task, "cpu"))
    with progress.task(f"Evaluating trial {meta['trial']} on the eval split", total=None):
        texts = evaluator.texts(model)
    from advisor.metrics import score_all

    m = task.metric
    scores = score_all(m.name, texts, [r.output for r in splits.eval], labels=m.labels, fields=m.fields,
                       embedder=evaluator.embedder)
    mean, lo, hi = bootstrap_ci(scores, task.verdict.confidence, task.verdict.bootstrap_samples, task.seed)
    quality = Quality(mean=mean, ci_low=lo, ci_high=hi, n=len(scores))
    write_predictions(run_dir / "predictions" / "tuned.jsonl", splits.eval, texts, scores)
    cache.write_text(json.dumps({"trial": meta["trial"], "n": len(splits.eval), "quality": quality.model_dump()}))
    return quality


def load_trained(adapter_dir: Path, device: str | None = None, tokenizer=None):
    """(model, tokenizer) for a saved trial: base + PEFT adapter, or the saved full model."""
    from advisor.models import load_model, load_tokenizer, pick_device, resolve_model

    meta = json.loads((Path(adapter_dir) / "advise_trial.json").read_text())
    source = resolve_model(meta["model"], Path(meta["base_dir"]))
    device = device or pick_device("auto")
    tokenizer = tokenizer or load_tokenizer(source, meta["trust_remote_code"])
    if meta["full_model"]:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(adapter_dir, trust_remote_code=meta["trust_remote_code"])
        model.to(device).eval()
        return model, tokenizer
    from peft import PeftModel

    base = load_model(source, device=device, trust_remote_code=meta["trust_remote_code"], seed=meta["seed"])
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    return model, tokenizer


CSV_COLUMNS = ("number", "state", "method", "params", "validation_quality", "eval_quality", "train_seconds",
               "estimated_train_seconds", "train_cost_usd", "trial_seconds", "trial_cost_usd", "latency_p95_ms",
               "peak_memory_mb", "trainable_params", "steps", "pareto", "retry_of", "worker", "note")


def write_trials_csv(trials: list[Trial], path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for t in sorted(trials, key=lambda t: t.number):
            row = t.model_dump()
            row["params"] = json.dumps(t.params, sort_keys=True)
            w.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- `advise tune`

def tune_command(task, *, progress=QUIET, resume: bool = False, storage: str | None = None,
                 n_trials: int | None = None):
    """``advise tune``: load the data, run (or resume, or join) the study, save results.json.

    An existing ``runs/<name>/results.json`` (from ``advise run``) keeps its baselines and
    verdict and gains the study; otherwise a results file with the study alone is written.
    """
    import datetime as _dt

    import advisor
    from advisor.data import load_splits
    from advisor.pipeline import environment, quiet_libraries
    from advisor.results import Results, load_results, save_results

    quiet_libraries()
    splits = load_splits(task)
    run_dir = task.run_dir
    if resume and not (storage or task.tune.storage) and not (run_dir / "study.db").exists():
        raise AdviseError(f"nothing to resume: {run_dir / 'study.db'} does not exist; run without --resume")
    if (run_dir / "results.json").exists():
        results = load_results(run_dir)
    else:
        from advisor.models import pick_device

        results = Results(advise_version=advisor.__version__, status="interrupted",
                          created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                          task=task.model_dump(mode="json"), environment=environment(pick_device(task.device)),
                          data=splits.stats, candidates=[])
    pilot = None
    if results.verdict is not None and results.verdict.pilot_config:
        pilot = {"config": results.verdict.pilot_config}
    t0 = time.perf_counter()
    results.study = run_study(task, splits, run_dir=run_dir, progress=progress, pilot=pilot, storage=storage,
                              n_trials=n_trials, resume=resume)
    results.timings["tune"] = time.perf_counter() - t0
    results.status = "complete" if results.study.status == "complete" else "interrupted"
    save_results(results, run_dir)
    return results
