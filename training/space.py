"""The search space: one define-by-run function across every method family.

The first choice is the method; each method then samples only its own hyperparameters
(rank and alpha for the LoRA family, the number of virtual tokens for prompt tuning, ...),
named ``<method>.<name>`` in Optuna so that the grouped multivariate TPE models each
method's parameters on their own. The shared parameters (epochs, effective batch size,
warmup, weight decay) keep their plain names.

Ranges come from the method registry and can be narrowed or widened in task.yaml::

    tune:
      search:
        learning_rate: {low: 1.0e-4, high: 3.0e-3}   # every method that takes it
        lora.rank: {choices: [8, 16]}                # one method only
        target_modules: {choices: [all-linear]}

>>> from optuna.trial import FixedTrial
>>> from training.methods import METHODS
>>> space = SearchSpace([METHODS["ia3"]])
>>> space.suggest(FixedTrial({"method": "ia3", "ia3.learning_rate": 3e-3, "ia3.target_modules": "attention",
...     "epochs": 2.0, "batch_size": 8, "warmup_ratio": 0.0, "weight_decay": 0.0}))["target_modules"]
'attention'
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Hyperparameter:
    """One searchable value: a float or int range (optionally log scale) or a set of choices."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    help: str = ""
    limits: tuple = (None, None)  # what any override must stay within, inclusive: (0, 1) for a dropout

    def __post_init__(self):
        if self.kind not in ("float", "int", "categorical"):
            raise ValueError(f"{self.name}: unknown kind {self.kind!r}")
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError(f"{self.name}: a categorical hyperparameter needs choices")
        elif not self.choices:
            if self.low is None or self.high is None or self.low > self.high:
                raise ValueError(f"{self.name}: needs low <= high")
            if self.log and self.low <= 0:
                raise ValueError(f"{self.name}: a log-scale range must be positive")

    def overridden(self, override) -> "Hyperparameter":
        """This hyperparameter with a user's ``tune.search`` override applied (already validated)."""
        if override is None:
            return self
        if override.choices is not None:
            return replace(self, choices=tuple(override.choices))
        low = self.low if override.low is None else override.low
        high = self.high if override.high is None else override.high
        if self.kind == "int":
            low, high = int(low), int(high)
        log = self.log and low > 0
        if low > high:  # one bound given, the other a default on the wrong side of it
            low, high = (high, high) if override.high is not None else (low, low)
        return replace(self, low=low, high=high, log=log)

    def suggest(self, trial, key: str) -> Any:
        if self.choices:
            return trial.suggest_categorical(key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(key, float(self.low), float(self.high), log=self.log)

    def check_override(self, override) -> str | None:
        """Why ``override`` does not fit this hyperparameter, or None if it does."""
        if override.choices is not None:
            if not override.choices:
                return "choices must not be empty"
            if self.kind == "categorical":
                unknown = [c for c in override.choices if c not in self.choices]
                if unknown:
                    return f"unknown choice {unknown[0]!r}; choose from {', '.join(map(str, self.choices))}"
                return None
            for c in override.choices:
                if isinstance(c, bool) or not isinstance(c, (int, float)):
                    return f"choices must be numbers, got {c!r}"
                if self.kind == "int" and c != int(c):
                    return f"choices must be whole numbers, got {c!r}"
                problem = self._out_of_limits(c, "a choice")
                if problem:
                    return problem
            return None
        if self.kind == "categorical":
            return "takes `choices`, not low/high"
        for bound in ("low", "high"):
            value = getattr(override, bound)
            if value is None:
                continue
            if self.kind == "int" and value != int(value):
                return f"{bound} must be a whole number, got {value!r}"
            problem = self._out_of_limits(value, bound)
            if problem:
                return problem
        if override.low is not None and override.high is not None and override.low > override.high:
            return f"low ({override.low:g}) is above high ({override.high:g})"
        return None

    def _out_of_limits(self, value: float, what: str) -> str | None:
        low, high = self.limits
        if self.log and value <= 0:
            return f"{what} must be positive (log scale), got {value!r}"
        if value < 0 and low is None:
            return f"{what} must not be negative, got {value!r}"
        if low is not None and value < low:
            return f"{what} must be at least {low:g}, got {value!r}"
        if high is not None and value > high:
            return f"{what} must be at most {high:g}, got {value!r}"
        return None


# Shared by every method; plain names in Optuna.
SHARED = (
    Hyperparameter("epochs", "float", 1.0, 4.0, help="passes over train (capped by tune.max_steps)",
                   limits=(0.01, 1000)),
    Hyperparameter("batch_size", "int", 4, 32, log=True, limits=(1, 4096),
                   help="effective batch size; above tune.micro_batch_size it uses gradient accumulation"),
    Hyperparameter("warmup_ratio", "float", 0.0, 0.2, help="share of steps with a linear warm-up", limits=(0, 1)),
    Hyperparameter("weight_decay", "float", 0.0, 0.1, help="AdamW weight decay", limits=(0, 10)),
)

# Method-specific defaults; a method may replace a range (VeRA's rank, each family's learning rate).
CATALOGUE = {hp.name: hp for hp in (
    Hyperparameter("learning_rate", "float", 1e-4, 1e-2, log=True, help="peak learning rate (range per method)",
                   limits=(1e-10, 1)),
    Hyperparameter("rank", "int", 4, 64, log=True, help="rank of the low-rank update", limits=(1, 4096)),
    Hyperparameter("alpha", "int", 4, 128, log=True, help="scaling numerator (LoRA: alpha / rank)",
                   limits=(1, 65536)),
    Hyperparameter("dropout", "float", 0.0, 0.2, help="dropout on the adapter's input", limits=(0, 0.9)),
    Hyperparameter("target_modules", "categorical", choices=("attention", "all-linear"),
                   help="adapt the attention projections only, or every linear layer"),
    Hyperparameter("num_virtual_tokens", "int", 4, 64, log=True, help="trainable virtual tokens", limits=(1, 1024)),
    Hyperparameter("block_size", "categorical", choices=(16, 32, 64), help="OFT block size"),
    Hyperparameter("encoder_hidden_size", "categorical", choices=(64, 128, 256), help="P-tuning encoder width"),
)}

class SearchSpace:
    """The define-by-run space over ``methods`` (and training ``objectives``) with the user's
    overrides applied.

    ``suggest(trial)`` returns clean parameters: ``{"method": "lora", "rank": 8, ...,
    "epochs": 2.0, ..., "objective": "sft"}``; ``optuna_params(clean)`` turns such a dict back
    into Optuna's names (used to enqueue the pilot and retried trials). With one objective the
    study has no objective dimension at all (an SFT-only study samples what it always did); with
    several, the objective is a categorical like the method, and its own hyperparameters are
    named ``<objective>.<name>`` (``dpo.beta``).
    """

    def __init__(self, methods, overrides: dict | None = None, objectives=None):
        if not methods:
            raise ValueError("the search space needs at least one method")
        self.methods = {m.name: m for m in methods}
        self.overrides = dict(overrides or {})
        self.objectives = {o.name: o for o in objectives or ()}

    def spec(self, owner: str | None, hp: Hyperparameter) -> Hyperparameter:
        """``hp`` with the overrides of its plain name and of ``<owner>.<name>`` (a method or an objective)."""
        spec = hp.overridden(self.overrides.get(hp.name))
        if owner is not None:
            spec = spec.overridden(self.overrides.get(f"{owner}.{hp.name}"))
        return spec

    def suggest(self, trial) -> dict:
        name = trial.suggest_categorical("method", list(self.methods))
        params: dict[str, Any] = {"method": name}
        for hp in self.methods[name].hyperparameters:
            params[hp.name] = self.spec(name, hp).suggest(trial, f"{name}.{hp.name}")
        for hp in SHARED:
            params[hp.name] = self.spec(None, hp).suggest(trial, hp.name)
        if self.objectives:
            objective = self._objective_choice(trial)
            for hp in self.objectives[objective].hyperparameters:
                params[hp.name] = self.spec(objective, hp).suggest(trial, f"{objective}.{hp.name}")
            params["objective"] = objective
        return params

    def _objective_choice(self, trial) -> str:
        if len(self.objectives) == 1:
            return next(iter(self.objectives))
        return trial.suggest_categorical("objective", list(self.objectives))

    def enqueueable(self, method: str, params: dict) -> dict | None:
        """A configuration (clean names) as Optuna parameters this space can enqueue: values outside
        a narrowed ``choices`` are left for the sampler; None when the method or objective is not searched."""
        if method not in self.methods:
            return None
        objective = params.get("objective")
        if self.objectives and objective is not None and objective not in self.objectives:
            return None
        clean = {"method": method, **params}
        owned = [(method, hp) for hp in self.methods[method].hyperparameters] + [(None, hp) for hp in SHARED]
        if objective in self.objectives:
            owned += [(objective, hp) for hp in self.objectives[objective].hyperparameters]
        for owner, hp in owned:
            choices = self.spec(owner, hp).choices
            if choices and hp.name in clean and clean[hp.name] not in choices:
                clean.pop(hp.name)
        return self.optuna_params(clean)

    def optuna_params(self, clean: dict) -> dict:
        """Clean parameters → Optuna's names; missing ones are left for the sampler."""
        name = clean["method"]
        out = {"method": name}
        for hp in self.methods[name].hyperparameters:
            if hp.name in clean:
                out[f"{name}.{hp.name}"] = clean[hp.name]
        for hp in SHARED:
            if hp.name in clean:
                out[hp.name] = clean[hp.name]
        objective = clean.get("objective")
        if objective in self.objectives:
            if len(self.objectives) > 1:
                out["objective"] = objective
            for hp in self.objectives[objective].hyperparameters:
                if hp.name in clean:
                    out[f"{objective}.{hp.name}"] = clean[hp.name]
        return out


def clean_params(optuna_params: dict) -> dict:
    """Optuna's names (``lora.rank``) → the clean names shown in results (``rank``)."""
    return {k.split(".", 1)[1] if "." in k else k: v for k, v in optuna_params.items()}


def micro_batches(batch_size: int, max_micro: int) -> tuple[int, int]:
    """(micro-batch, gradient accumulation) for an effective batch size: the largest micro-batch of at
    most ``max_micro`` that divides it, so micro-batch × accumulation is the effective batch exactly.

    >>> micro_batches(32, 8)
    (8, 4)
    >>> micro_batches(6, 8)
    (6, 1)
    >>> micro_batches(8, 3)
    (2, 4)
    """
    micro = max(d for d in range(1, max(1, min(max_micro, batch_size)) + 1) if batch_size % d == 0)
    return micro, batch_size // micro
