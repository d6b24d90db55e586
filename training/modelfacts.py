"""What the method registry needs to know about a base model: its linear layers, bias terms, size,
the device and its memory. Read once from a loaded model (``model_facts``)."""
from __future__ import annotations

from dataclasses import dataclass, field


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
        """``attention``, ``all-linear`` or comma-separated leaf names (``q_proj,v_proj``) as module names."""
        from foundation.config import parse_target_modules

        parsed = parse_target_modules(which)
        if parsed == "attention":
            return list(self.attention_modules)
        if parsed == "all-linear":
            return self.all_linear
        return parsed

    def unknown_targets(self, which: str) -> list[str]:
        """Named target modules the model does not have (``attention``/``all-linear`` always match)."""
        return [m for m in self.targets(which) if m not in self.all_linear]


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


def model_config(source, trust_remote_code: bool = False):
    """The model's transformers config, without its weights."""
    from transformers import AutoConfig

    from foundation.models import bundled_model_dir, check_model_code, tiny_config

    if source.kind == "tiny":
        return tiny_config()
    location = str(bundled_model_dir()) if source.kind == "bundled" else source.location
    check_model_code(source, trust_remote_code)
    return AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)


def facts_from_config(config, device: str = "cpu", memory_budget_gb: float | None = None) -> ModelFacts:
    """The facts of a model built on the meta device: its layers and size, no weights allocated."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model_facts(model, device, memory_budget_gb)
