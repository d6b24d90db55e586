"""Loading and checking a task for a command, the same way for the CLI and the service.

``load_task`` reads task.yaml and its sections (``foundation.taskfile``) and adds the checks
only a stage can make (which PEFT methods and hyperparameters the tuner knows).
``check_task`` then runs every check a run needs before any model is loaded: data, splits,
corpus. ``advise validate``, ``advise run``, ``advise tune`` and the service all start here, so
what validate accepts is what a run can use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from foundation.config import TaskConfig
from foundation.errors import AdviseError, first_line
from foundation.paths import check_run_outputs, display_path
from foundation.taskfile import load_task as read_task


def load_task(path: str | Path) -> TaskConfig:
    """Read and validate a task.yaml; every error is an AdviseError naming the file and the key.

    >>> load_task("missing.yaml")
    Traceback (most recent call last):
    foundation.errors.AdviseError: missing.yaml: file not found
    """
    from training.methods import check_tune_section
    from tuner.storage import check_storage_url, resolve_sqlite

    task = read_task(path)
    if task.tune.storage is not None:  # a relative SQLite file lives beside task.yaml, as every path in it
        task.tune.storage = resolve_sqlite(task.tune.storage, task.base_dir)
    problem = check_tune_section(task.tune, task.baselines)
    if problem is None and task.tune.storage is not None:
        message = check_storage_url(task.tune.storage)
        problem = ("tune.storage", message) if message else None
    if problem:
        where, message = problem
        raise AdviseError(message, file=display_path(Path(path)), where=where)
    return task


@dataclass
class CheckedTask:
    """A task that passed every check a run makes before loading a model, with its data loaded."""

    task: TaskConfig
    splits: object  # foundation.data.Splits
    corpus: list  # foundation.corpus.Document
    warnings: list[str] = field(default_factory=list)
    training: list[str] = field(default_factory=list)  # the sequence lengths training will use

    def summary(self) -> str:
        s = self.splits.stats
        formats = ", ".join(f"{k}: {v}" for k, v in s["formats"].items())
        return (f"task '{self.task.name}', formats ({formats}), data kind {s.get('kind', 'sft')}, "
                f"train {s['sizes']['train']}, "
                f"validation {s['sizes']['validation']}, eval {s['sizes']['eval']}, "
                f"corpus documents {len(self.corpus)}, metric {self.task.metric.name}")


def check_task(path_or_task: str | Path | TaskConfig, *, training: bool = True,
               run_model_code: bool = True, keys: bool | None = None) -> CheckedTask:
    """``load_task`` (unless given a loaded task), then the data, the splits, the corpus, the
    device, and (with ``training``) what fine-tuning needs: the model's layers that
    ``target_modules`` names and the training records' token lengths. No weights are loaded.
    Without ``run_model_code`` (the service checking an upload) a model's own code is never
    imported: a task that trusts it has its model checks left to the worker that runs it.
    With ``keys`` (default: as ``run_model_code``) every ``compare:`` endpoint's API key must be in
    the environment; the service's web process checks without, the keys live in the worker's."""
    from foundation.corpus import load_corpus
    from foundation.data import load_splits

    task = path_or_task if isinstance(path_or_task, TaskConfig) else load_task(path_or_task)
    shown = display_path(task.source_path) if task.source_path else "task.yaml"
    splits = load_splits(task)
    skipped: list[Path] = []
    corpus = load_corpus(task, skipped)
    checked = CheckedTask(task=task, splits=splits, corpus=corpus)
    if skipped:
        names = ", ".join(display_path(f) for f in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        count = "1 file is" if len(skipped) == 1 else f"{len(skipped)} files are"
        checked.warnings.append(f"corpus: {count} not .md, .txt or .jsonl and not indexed ({names}); "
                                "convert them to text to use them")
    leak = splits.stats["leakage"]["train_eval_duplicates"]
    if leak:
        checked.warnings.append(f"{leak} eval records also appear in train (leakage); scores will be optimistic")
    _with_file(shown, _check_device, task)
    check_run_outputs(task.run_dir, task_file=shown, where="output.dir")
    _with_file(shown, _check_validation, task, splits)
    if (run_model_code if keys is None else keys) and task.compare:
        from foundation.endpoints import check_endpoints

        checked.warnings.extend(_with_file(shown, check_endpoints, task))
    _with_file(shown, _check_objectives, task, splits, corpus, None if training else checked.warnings)
    if training and task.trust_remote_code and not run_model_code:
        checked.warnings.append("trust_remote_code: the model's own code is not run while the task is checked; its "
                                "layers and token lengths are checked when the run starts")
    elif training:
        checked.training = _with_file(shown, _check_training, task, splits, checked.warnings, corpus)
    return checked


def _with_file(shown: str, check, *args):
    """Run ``check``; its AdviseError names the task file (the key alone says little on its own)."""
    try:
        return check(*args)
    except AdviseError as e:
        if e.file is not None:
            raise
        raise AdviseError(e.message, file=shown, where=e.where) from None


def _check_objectives(task, splits, corpus, warnings: list[str] | None = None, with_room: int | None = None) -> None:
    """The pilot's objective, and at least one of ``tune.objectives``, can train on this data (the
    objectives' own ``applies`` hooks, as the study calls them); with ``warnings``, the listed
    objectives the study will skip. ``with_room``: train prompts leaving room for an answer."""
    from baselines.finetune import pilot_objective
    from training.objectives import OBJECTIVES, ObjectiveFacts, applicable

    facts = ObjectiveFacts.of(task, splits.kind, corpus, splits.train, with_room)
    if task.baselines.finetune.enabled:
        name = pilot_objective(task, splits.kind)
        ok, why = OBJECTIVES[name].applies(facts)
        if not ok:
            raise AdviseError(f"objective {name!r} cannot train on this data ({splits.kind}): it {why}",
                              where="baselines.finetune.objective")
    chosen, excluded = applicable(task.tune.objectives, facts)
    if not chosen:
        raise AdviseError("no objective listed here can train on this data: "
                          + "; ".join(f"{k}: {v}" for k, v in excluded.items() if k in (task.tune.objectives or ())),
                          where="tune.objectives")
    skipped = {k: v for k, v in excluded.items() if k in (task.tune.objectives or ())}
    if warnings is not None and skipped:
        warnings.append("tune.objectives: the study skips " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))


def _check_methods(task, config, warnings: list[str]) -> str | None:
    """At least one PEFT method the study would search applies to this model on this device (the
    registry's ``applies`` hooks, as the study calls them): an error naming ``tune.methods`` when
    none of those listed does, a warning naming those listed that are skipped; with the default
    list, what is skipped is returned for the tune note."""
    from foundation.models import pick_device
    from training.methods import applicable
    from training.modelfacts import facts_from_config

    facts = facts_from_config(config, pick_device(task.device), task.tune.memory_budget_gb)
    chosen, excluded = applicable(task.tune.methods, facts)
    reasons = "; ".join(f"{k}: {v}" for k, v in excluded.items())
    if not chosen:
        raise AdviseError(f"no fine-tuning method {'listed here ' if task.tune.methods else ''}applies to this model "
                          f"on this device: {reasons}", where="tune.methods")
    if excluded and task.tune.methods:
        warnings.append(f"tune.methods: the study skips {reasons}")
    return f"skips {', '.join(excluded)} (not applicable here)" if excluded else None


def _check_validation(task, splits) -> None:
    """The pilot's learning curve and every study trial are measured on the validation records: a
    task that holds none out on purpose is refused. (One with too few train records to hold any
    out is the scaffold's: its pilot has no curve, `advise run` runs no study and says so, and
    `advise tune` refuses it before loading anything.)"""
    if splits.validation or not task.baselines.finetune.enabled:
        return
    if task.data.validation_fraction == 0:
        raise AdviseError("0 holds no validation records out, and the pilot's learning curve and every study trial "
                          "are measured on them: set it to 0.1 or more (or disable baselines.finetune)",
                          where="data.validation_fraction")


def _check_device(task) -> None:
    from foundation.models import pick_device

    pick_device(task.device)


def _check_training(task, splits, warnings: list[str], corpus=()) -> list[str]:
    """What the pilot and the study will need; notes on the sequence lengths they will use, and a
    warning when eval references are longer than the answers the model may write."""
    from foundation.models import load_tokenizer, resolve_model
    from training.lengths import NothingToLearn, record_token_lengths, training_length
    from training.modelfacts import facts_from_config, model_config

    source = resolve_model(task.model, task.base_dir)
    try:
        config = model_config(source, task.trust_remote_code)
        facts = facts_from_config(config)
    except AdviseError:
        raise
    except Exception as e:  # a folder's config.json is the user's: whatever transformers makes of it
        raise AdviseError(f"cannot read the model's config: {first_line(e) or type(e).__name__}", where="model") from None
    unknown = facts.unknown_targets(task.baselines.finetune.target_modules)
    if task.baselines.finetune.enabled and unknown:
        raise AdviseError(f"the model has no layer named {', '.join(unknown)}; its linear layers are "
                          f"{', '.join(facts.all_linear)} (or use all-linear / attention)",
                          where="baselines.finetune.target_modules")
    try:
        tokenizer = load_tokenizer(source, task.trust_remote_code)
    except AdviseError:
        raise
    except Exception as e:
        raise AdviseError(f"cannot load the model's tokenizer: {first_line(e) or type(e).__name__}", where="model") from None
    if not getattr(tokenizer, "chat_template", None):
        raise AdviseError("the model's tokenizer has no chat template (a base model?): advise prompts and trains "
                          "through it; use an instruction-tuned model or add a chat_template to its "
                          "tokenizer_config.json", where="model")
    lengths = record_token_lengths(tokenizer, task.prompt, splits.train)
    notes = []
    keys = (["baselines.finetune.max_seq_length"] if task.baselines.finetune.enabled else []) + ["tune.max_seq_length"]
    for key in keys:
        section = task.baselines.finetune if key.startswith("baselines") else task.tune
        try:
            fit = training_length(lengths, section.max_seq_length, config, key)
        except NothingToLearn as e:
            if not e.fit.derived:
                raise
            # No length was set: the prompts themselves are too long, so name what makes them long.
            raise AdviseError(e.message, where="prompt.system" if task.prompt.system else "data.train") from None
        notes.append(f"{key.rsplit('.', 1)[0]}: " + fit.describe(key))
    # what the study will refuse, from the same hooks it calls (fit: tune.max_seq_length's)
    with_room = sum(r.label is not False and p + task.generation.max_new_tokens <= fit.max_seq_length
                    for (p, _), r in zip(lengths, splits.train))
    _check_objectives(task, splits, corpus, warnings, with_room)
    if skipped := _check_methods(task, config, warnings):
        notes[-1] += f"; the study {skipped}"
    _check_answer_room(task, splits, tokenizer, warnings)
    return notes


def _check_answer_room(task, splits, tokenizer, warnings: list[str]) -> None:
    """A warning when eval references are longer than the answers the model may write."""
    if splits.kind == "sft":
        room = task.generation.max_new_tokens
        sizes = [len(tokenizer(r.output, add_special_tokens=False)["input_ids"]) for r in splits.eval]
        over = sum(n > room for n in sizes)
        if over:
            warnings.append(f"{over} of {len(sizes)} eval references are longer than generation.max_new_tokens ({room} "
                            f"tokens; the longest takes {max(sizes)}): every answer is cut before it could match them; "
                            "raise generation.max_new_tokens")

