"""Fine-tuning methods, one ``register_method`` call each.

An entry says how to build the method's PEFT config (or parameter selection, for BitFit and
full fine-tuning) from sampled parameters, which hyperparameters it takes, its learning-rate
range, and when it applies to a model on a device. Adding a method is one entry here plus
the parametrized tests picking it up.

Learning-rate ranges follow the field's rules of thumb: LoRA's best rate is about 10× full
fine-tuning's; VeRA, IA3 and prompt tuning train so few parameters that they want larger
rates still.

>>> sorted(METHODS)[:3]
['bitfit', 'dora', 'full']
>>> METHODS["lora"].family
'lora'
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from training.modelfacts import ModelFacts, device_memory_gb, full_ft_memory_gb
from training.space import CATALOGUE, SHARED, Hyperparameter

FAMILIES = ("lora", "adapter", "virtual_tokens", "full")


def _always(facts: ModelFacts) -> tuple[bool, str]:
    return True, ""


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    description: str
    hyperparameters: tuple[Hyperparameter, ...]
    build: Callable[[dict, ModelFacts], Any]  # → PeftConfig, or callable(model) -> model
    applies: Callable[[ModelFacts], tuple[bool, str]] = _always
    load_base: Callable | None = None  # (source, device, task) -> model; default foundation.models.load_model
    mergeable: bool = True  # can the adapter be merged into the base weights
    full_model: bool = False  # trains base weights: save the whole model, not an adapter
    save: Callable | None = None  # (model, path, init_dir) -> None; default model.save_pretrained(path)
    count_trainable: Callable | None = None  # (base, adapter) -> int without touching base; default: PEFT on meta
    notes: dict = field(default_factory=dict)

    def trainable_parameters(self, base, adapter) -> int:
        """Trainable parameters the method will have on ``base``; an estimate, 0 when unknown."""
        if self.count_trainable is not None:
            return self.count_trainable(base, adapter)
        return _peft_trainable_on_meta(base, adapter)

    def check(self, facts: ModelFacts) -> tuple[bool, str]:
        return self.applies(facts)


METHODS: dict[str, Method] = {}


def register_method(name: str, family: str, description: str, *, learning_rate: tuple[float, float],
                    hyperparameters: tuple[str | Hyperparameter, ...] = (), build, **kw) -> Method:
    """Add a method to ``METHODS``; checks the name, the family and every hyperparameter.

    Hyperparameters are names from ``training.space.CATALOGUE`` or Hyperparameter objects that
    replace a catalogue entry's range for this method. ``learning_rate`` is its (low, high).
    """
    if name in METHODS:
        raise ValueError(f"method {name!r} is already registered")
    if not name.isidentifier() or "." in name:
        raise ValueError(f"method name {name!r} must be a plain identifier")
    if family not in FAMILIES:
        raise ValueError(f"{name}: family {family!r} is not one of {FAMILIES}")
    low, high = learning_rate
    if not 0 < low < high < 1:
        raise ValueError(f"{name}: learning_rate range must satisfy 0 < low < high < 1")
    specs = [replace(CATALOGUE["learning_rate"], low=low, high=high)]
    for hp in hyperparameters:
        spec = hp if isinstance(hp, Hyperparameter) else CATALOGUE.get(hp)
        if spec is None or spec.name not in CATALOGUE:
            raise ValueError(f"{name}: unknown hyperparameter {hp!r}; add it to training.space.CATALOGUE")
        if spec.name == "learning_rate" or spec.name in [s.name for s in specs]:
            raise ValueError(f"{name}: hyperparameter {spec.name!r} given twice")
        specs.append(spec)
    if not callable(build):
        raise ValueError(f"{name}: build must be callable")
    method = Method(name=name, family=family, description=description, hyperparameters=tuple(specs), build=build, **kw)
    METHODS[name] = method
    return method


# ---------------------------------------------------------------- builders

def _lora(**extra):
    def build(p: dict, facts: ModelFacts):
        from peft import LoraConfig

        rank = p["rank"]
        if "init_lora_weights" in extra:  # PiSSA/SVD init: the rank cannot exceed the layer
            rank = facts.max_rank(p["target_modules"], rank)
        return LoraConfig(r=rank, lora_alpha=p["alpha"], lora_dropout=p["dropout"],
                          target_modules=facts.targets(p["target_modules"]), task_type="CAUSAL_LM", **extra)

    return build


def _loha(p, facts):
    from peft import LoHaConfig

    return LoHaConfig(r=p["rank"], alpha=p["alpha"], module_dropout=p["dropout"],
                      target_modules=facts.targets(p["target_modules"]), task_type="CAUSAL_LM")


def _lokr(p, facts):
    from peft import LoKrConfig

    return LoKrConfig(r=p["rank"], alpha=p["alpha"], module_dropout=p["dropout"],
                      target_modules=facts.targets(p["target_modules"]), task_type="CAUSAL_LM")


def _vera(p, facts):
    from peft import VeraConfig

    return VeraConfig(r=p["rank"], vera_dropout=p["dropout"], target_modules=facts.targets(p["target_modules"]),
                      task_type="CAUSAL_LM")


def _ia3(p, facts):
    from peft import IA3Config

    targets = facts.targets(p["target_modules"])
    return IA3Config(target_modules=targets, feedforward_modules=[m for m in targets if m in facts.mlp_modules],
                     task_type="CAUSAL_LM")


def _oft(p, facts):
    from peft import OFTConfig

    return OFTConfig(r=0, oft_block_size=p["block_size"], module_dropout=p["dropout"],
                     target_modules=facts.targets(p["target_modules"]), task_type="CAUSAL_LM")


def _prompt_tuning(p, facts):
    from peft import PromptTuningConfig

    return PromptTuningConfig(num_virtual_tokens=p["num_virtual_tokens"], task_type="CAUSAL_LM")


def _prefix_tuning(p, facts):
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(num_virtual_tokens=p["num_virtual_tokens"], task_type="CAUSAL_LM")


def _p_tuning(p, facts):
    from peft import PromptEncoderConfig

    return PromptEncoderConfig(num_virtual_tokens=p["num_virtual_tokens"],
                               encoder_hidden_size=p["encoder_hidden_size"], task_type="CAUSAL_LM")


def _bitfit(p, facts):
    def only_biases(model):
        for name, param in model.named_parameters():
            param.requires_grad = name.endswith("bias")
        return model

    return only_biases


def _full(p, facts):
    def all_weights(model):
        for param in model.parameters():
            param.requires_grad = True
        return model

    return all_weights


def _peft_trainable_on_meta(base, adapter) -> int:
    """Build the PEFT model on the meta device (the architecture without weights) and count."""
    import copy

    import torch
    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if not isinstance(adapter, PeftConfig):
        return 0
    try:
        with torch.device("meta"):
            shadow = AutoModelForCausalLM.from_config(base.config)
            cfg = copy.deepcopy(adapter)
            if getattr(cfg, "init_lora_weights", True) not in (True, False):
                cfg.init_lora_weights = True  # PiSSA's SVD cannot run on meta tensors
            peft_model = get_peft_model(shadow, cfg)
        return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    except Exception:  # an estimate only: unknown beats a crashed trial
        return 0


def _count_biases(base, adapter) -> int:
    return sum(p.numel() for n, p in base.named_parameters() if n.endswith("bias"))


def _count_all(base, adapter) -> int:
    return sum(p.numel() for p in base.parameters())


def _pissa_save(model, path, init_dir):
    """Save PiSSA as a plain LoRA adapter for the unmodified base (PiSSA rewrites base weights)."""
    model.save_pretrained(path, path_initial_model_for_weight_conversion=str(init_dir))


# ---------------------------------------------------------------- applicability

def _needs_bias(facts: ModelFacts):
    if facts.has_bias:
        return True, ""
    return False, "the model has no bias terms, and BitFit trains only biases"


def _needs_cuda_bnb(facts: ModelFacts):
    if not facts.device.startswith("cuda"):
        return False, "needs CUDA and bitsandbytes (4-bit base model); this run is on CPU"
    if not facts.bitsandbytes:
        return False, "needs bitsandbytes: pip install 'advise[cuda]'"
    return True, ""


def _fits_memory(facts: ModelFacts):
    need = full_ft_memory_gb(facts)
    budget = facts.memory_budget_gb if facts.memory_budget_gb is not None else device_memory_gb(facts.device)
    source = "tune.memory_budget_gb" if facts.memory_budget_gb is not None else f"free memory on {facts.device}"
    if need > budget:
        return False, f"needs about {need:.1f} GB for weights, gradients and AdamW state; {source} is {budget:.1f} GB"
    return True, ""


def _load_4bit(source, device: str, task):
    """QLoRA's base: the model quantised to 4-bit NF4 with bf16 compute, prepared for training."""
    import tempfile

    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from foundation.models import bundled_model_dir, load_model

    if source.kind == "tiny":  # random init has no files: write them once for from_pretrained
        location = tempfile.mkdtemp(prefix="advise-tiny-")
        load_model(source, device="cpu", seed=task.seed).save_pretrained(location)
    else:
        location = str(bundled_model_dir()) if source.kind == "bundled" else source.location
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(location, quantization_config=quant, dtype=torch.bfloat16,
                                                 device_map={"": torch.cuda.current_device()},
                                                 trust_remote_code=task.trust_remote_code)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=task.tune.gradient_checkpointing)


# ---------------------------------------------------------------- the registry

_LORA_HP = ("rank", "alpha", "dropout", "target_modules")
_LORA_LR = (5e-5, 2e-3)  # centred near 3e-4, about 10× full fine-tuning's

register_method("lora", "lora", "LoRA: low-rank update matrices", learning_rate=_LORA_LR,
                hyperparameters=_LORA_HP, build=_lora())
register_method("dora", "lora", "DoRA: LoRA with the update split into magnitude and direction",
                learning_rate=_LORA_LR, hyperparameters=_LORA_HP, build=_lora(use_dora=True))
register_method("rslora", "lora", "rsLoRA: LoRA scaled by alpha/sqrt(rank), stable at high ranks",
                learning_rate=_LORA_LR, hyperparameters=_LORA_HP, build=_lora(use_rslora=True))
register_method("pissa", "lora", "PiSSA: LoRA initialised from the principal singular vectors",
                learning_rate=_LORA_LR, hyperparameters=_LORA_HP, build=_lora(init_lora_weights="pissa_niter_4"),
                save=_pissa_save)
register_method("qlora", "lora", "QLoRA: LoRA on a 4-bit quantised base model", learning_rate=_LORA_LR,
                hyperparameters=_LORA_HP, build=_lora(), applies=_needs_cuda_bnb, load_base=_load_4bit)
register_method("loha", "adapter", "LoHa: low-rank Hadamard product update", learning_rate=(1e-4, 5e-3),
                hyperparameters=_LORA_HP, build=_loha)
register_method("lokr", "adapter", "LoKr: low-rank Kronecker product update", learning_rate=(1e-4, 5e-3),
                hyperparameters=_LORA_HP, build=_lokr)
register_method("vera", "adapter", "VeRA: shared frozen random matrices, trained scaling vectors",
                learning_rate=(1e-3, 5e-2),
                hyperparameters=(Hyperparameter("rank", "int", 64, 512, log=True, help="rank of the shared matrices",
                                                 limits=(1, 4096)),
                                 "dropout", "target_modules"), build=_vera)
register_method("ia3", "adapter", "IA3: learned rescaling vectors on keys, values and feed-forward",
                learning_rate=(1e-3, 3e-2), hyperparameters=("target_modules",), build=_ia3)
register_method("oft", "adapter", "OFT: orthogonal block-diagonal fine-tuning", learning_rate=(1e-4, 5e-3),
                hyperparameters=("block_size", "dropout", "target_modules"), build=_oft)
register_method("prompt_tuning", "virtual_tokens", "prompt tuning: trainable soft-prompt embeddings",
                learning_rate=(1e-3, 3e-1), hyperparameters=("num_virtual_tokens",), build=_prompt_tuning,
                mergeable=False)
register_method("prefix_tuning", "virtual_tokens", "prefix tuning: trainable key/value prefixes in every layer",
                learning_rate=(1e-4, 3e-2), hyperparameters=("num_virtual_tokens",), build=_prefix_tuning,
                mergeable=False)
register_method("p_tuning", "virtual_tokens", "P-tuning: virtual tokens produced by a small MLP encoder",
                learning_rate=(1e-4, 3e-2), hyperparameters=("num_virtual_tokens", "encoder_hidden_size"),
                build=_p_tuning, mergeable=False)
register_method("bitfit", "full", "BitFit: only the bias terms", learning_rate=(1e-4, 1e-2),
                build=_bitfit, applies=_needs_bias, full_model=True, count_trainable=_count_biases)
register_method("full", "full", "full fine-tuning: every weight", learning_rate=(5e-6, 2e-4),
                build=_full, applies=_fits_memory, full_model=True, count_trainable=_count_all)


def applicable(names: list[str] | None, facts: ModelFacts) -> tuple[list[Method], dict[str, str]]:
    """The methods to search (registry order) and the excluded ones with the reason."""
    chosen, excluded = [], {}
    for name, method in METHODS.items():
        if names is not None and name not in names:
            continue
        ok, reason = method.check(facts)
        if ok:
            chosen.append(method)
        else:
            excluded[name] = reason
    return chosen, excluded


# ---------------------------------------------------------------- checking task.yaml's tune section

HYPERPARAMETERS = tuple(CATALOGUE) + tuple(hp.name for hp in SHARED)


def check_search_key(key: str, override) -> str | None:
    """Why a ``tune.search`` entry is wrong, or None. Keys are ``name``, ``method.name`` or
    ``objective.name`` (``dpo.beta``)."""
    from training.objectives import OBJECTIVES

    owners = {**{n: m.hyperparameters for n, m in METHODS.items()},
              **{n: o.hyperparameters for n, o in OBJECTIVES.items()}}
    if "." in key:
        owner, name = key.split(".", 1)
        if owner not in owners:
            return (f"unknown method {owner!r} in {key!r}; choose one of {', '.join(METHODS)} "
                    f"(or an objective: {', '.join(OBJECTIVES)})")
        spec = {hp.name: hp for hp in owners[owner]}.get(name)
        if spec is None:
            takes = ", ".join(hp.name for hp in owners[owner]) or "none"
            kind = "method" if owner in METHODS else "objective"
            return f"{kind} {owner!r} has no hyperparameter {name!r}; it takes {takes}"
        return spec.check_override(override)
    specs = [hp for hp in SHARED if hp.name == key] or [
        hp for hps in owners.values() for hp in hps if hp.name == key]
    if not specs:
        return (f"unknown hyperparameter {key!r}; choose one of {', '.join(HYPERPARAMETERS)} "
                "(or method.name, objective.name)")
    for spec in specs:
        problem = spec.check_override(override)
        if problem:
            return problem
    return None


def check_tune_section(tune, baselines=None) -> tuple[str, str] | None:
    """(key path, problem) for the first ``tune:`` entry (or the pilot's ``baselines.finetune.objective``)
    the registries cannot honour, or None."""
    for i, name in enumerate(tune.methods or ()):
        if name not in METHODS:
            return f"tune.methods.{i}", f"unknown method {name!r}; choose from {', '.join(METHODS)}"
    from training.objectives import check_objectives

    problem = check_objectives(tune.objectives)
    if problem:
        index, _, message = problem.partition(": ")
        return f"tune.objectives.{index}", message
    pilot = getattr(baselines, "finetune", None) if baselines is not None else None
    if pilot is not None and pilot.objective != "auto" and check_objectives([pilot.objective]):
        return "baselines.finetune.objective", check_objectives([pilot.objective]).partition(": ")[2]
    for key, override in tune.search.items():
        problem = check_search_key(key, override)
        if problem:
            return f"tune.search.{key}", problem
    return None
