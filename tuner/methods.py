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

from tuner.space import CATALOGUE, Hyperparameter

FAMILIES = ("lora", "adapter", "virtual_tokens", "full")


@dataclass
class ModelFacts:
    """What the applicability checks and config builders need to know about the base model."""

    attention_modules: list[str]  # leaf names of linear layers in attention, e.g. q_proj
    mlp_modules: list[str]  # leaf names of the other linear layers, e.g. up_proj
    has_bias: bool
    total_params: int
    hidden_size: int
    device: str = "cpu"
    memory_budget_gb: float | None = None  # None: what the device has
    bitsandbytes: bool = False
    min_dims: dict = field(default_factory=dict)  # leaf name → smallest of in/out features

    def max_rank(self, which: str, rank: int) -> int:
        """``rank`` capped at the smallest targeted layer dimension (PiSSA's SVD cannot exceed it)."""
        dims = [self.min_dims[m] for m in self.targets(which) if m in self.min_dims]
        return min([rank] + dims)

    @property
    def all_linear(self) -> list[str]:
        return self.attention_modules + self.mlp_modules

    def targets(self, which: str) -> list[str]:
        return list(self.attention_modules) if which == "attention" else self.all_linear


def model_facts(model, device: str = "cpu", memory_budget_gb: float | None = None) -> ModelFacts:
    """Inspect a loaded base model (module names, bias terms, size)."""
    import importlib.util

    import torch

    attention, mlp, min_dims = [], [], {}
    output = model.get_output_embeddings()
    for full_name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is output:
            continue
        leaf = full_name.rsplit(".", 1)[-1]
        min_dims[leaf] = min(min_dims.get(leaf, 1 << 30), module.in_features, module.out_features)
        bucket = attention if ("attn" in full_name or "attention" in full_name) else mlp
        if leaf not in bucket:
            bucket.append(leaf)
    has_bias = any(name.endswith("bias") for name, _ in model.named_parameters())
    return ModelFacts(attention_modules=attention, mlp_modules=mlp, has_bias=has_bias,
                      total_params=sum(p.numel() for p in model.parameters()),
                      hidden_size=int(getattr(model.config, "hidden_size", 0) or 0), device=device,
                      memory_budget_gb=memory_budget_gb, min_dims=min_dims,
                      bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None)


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
    load_base: Callable | None = None  # (source, device, task) -> model; default advisor.models.load_model
    mergeable: bool = True  # can the adapter be merged into the base weights
    full_model: bool = False  # trains base weights: save the whole model, not an adapter
    save: Callable | None = None  # (model, path, init_dir) -> None; default model.save_pretrained(path)
    notes: dict = field(default_factory=dict)

    def check(self, facts: ModelFacts) -> tuple[bool, str]:
        return self.applies(facts)


METHODS: dict[str, Method] = {}


def register_method(name: str, family: str, description: str, *, learning_rate: tuple[float, float],
                    hyperparameters: tuple[str | Hyperparameter, ...] = (), build, **kw) -> Method:
    """Add a method to ``METHODS``; checks the name, the family and every hyperparameter.

    Hyperparameters are names from ``tuner.space.CATALOGUE`` or Hyperparameter objects that
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
            raise ValueError(f"{name}: unknown hyperparameter {hp!r}; add it to tuner.space.CATALOGUE")
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


BYTES_PER_PARAM_FULL_FT = 16  # fp32 weight + gradient + two AdamW moments (4 + 4 + 8 bytes)


def full_ft_memory_gb(facts: ModelFacts) -> float:
    """Weights, gradients and optimiser state, plus 20% for activations at small batches."""
    return facts.total_params * BYTES_PER_PARAM_FULL_FT * 1.2 / 2**30


def device_memory_gb(device: str) -> float:
    import psutil

    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_properties(0).total_memory / 2**30
    return psutil.virtual_memory().available / 2**30


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

    from advisor.models import bundled_model_dir, load_model

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
                hyperparameters=(Hyperparameter("rank", "int", 64, 512, log=True, help="rank of the shared matrices"),
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
                build=_bitfit, applies=_needs_bias, full_model=True)
register_method("full", "full", "full fine-tuning: every weight", learning_rate=(5e-6, 2e-4),
                build=_full, applies=_fits_memory, full_model=True)


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
