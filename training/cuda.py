"""Training on a CUDA GPU at the speed the hardware allows. ``bench/bench_cuda.py`` measures each
piece on an H100 (bench/results/cuda.json); what the profile of the plain TRL path showed, and
the answer to each:

- PEFT keeps adapter weights in fp32 and casts every bf16 activation to meet them (23% of GPU
  time in dtype copies): adapters are created in the base model's bf16.
- A new padded shape every step sent SDPA to cuDNN, which builds a graph per shape, and the
  padding mask kept it off the flash kernel: records are grouped by length and right-padded to a
  multiple of 8, and the attention mask is dropped. With right padding a causal model's real
  tokens never attend to a pad (pads come after them, and their labels are -100), so SDPA runs
  the flash kernel with ``is_causal`` and no mask.
- TRL's per-step entropy and accuracy and a host sync per logged step: the model's own loss,
  tokens counted on the device, logs every ``LOG_EVERY`` steps.
- 128k-vocabulary logits in fp32 (14 GiB at batch 64): Liger's fused linear cross-entropy, RMSNorm,
  SwiGLU and RoPE when ``liger-kernel`` is installed (``pip install 'advise[cuda]'``).
- A fixed micro-batch of 8: the largest that fits, probed once per model, length and GPU and
  cached in ``~/.cache/advise/micro_batch.json``; gradient accumulation keeps the effective batch.
- Fused AdamW; two dataloader workers so collation overlaps the GPU.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math

LOG_EVERY = 10  # optimiser steps between logged losses (each log reads values back from the GPU)
MEMORY_SHARE = 0.85  # of the GPU's memory a micro-batch may plan to use
PROBE_ROWS = 2


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def sft_overrides(steps: int) -> dict:
    """``SFTConfig`` arguments that differ on CUDA."""
    return {"bf16": True, "optim": "adamw_torch_fused", "train_sampling_strategy": "group_by_length", "pad_to_multiple_of": 8,
            "use_liger_kernel": liger_available(), "logging_steps": min(LOG_EVERY, steps),
            "dataloader_num_workers": 2, "dataloader_pin_memory": True, "dataloader_persistent_workers": False}


def prepare_backends() -> None:
    """Flash and memory-efficient SDPA kernels only: cuDNN's builds a graph for every new shape."""
    import torch

    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.matmul.allow_tf32 = True


def micro_batch_rows(model, max_len: int, effective: int) -> int:
    """The largest micro-batch (records of ``max_len`` tokens) that fits, at most ``effective``."""
    key = _cache_key(model, max_len)
    cache = _read_cache()
    if key not in cache:
        cache[key] = _probe(model, max_len)
        _write_cache(cache)
    return max(1, min(effective, cache[key]))


def _probe(model, max_len: int) -> int:
    """Peak memory of a forward and backward at ``PROBE_ROWS`` rows, scaled to the GPU's memory."""
    import torch

    device = next(model.parameters()).device
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    ids = torch.randint(10, 1000, (PROBE_ROWS, max_len), device=device)
    was_training = model.training
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    peak = torch.cuda.max_memory_allocated(device)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    del ids, loss
    torch.cuda.empty_cache()
    per_row = max(1, (peak - before) / PROBE_ROWS)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = trainable * 12  # fp32 AdamW moments and master gradients
    budget = torch.cuda.get_device_properties(device).total_memory * MEMORY_SHARE - before - optimizer
    return max(1, int(budget // per_row))


def _cache_key(model, max_len: int) -> str:
    import torch

    config = getattr(model, "config", None)
    text = json.dumps({"config": config.to_dict() if config is not None else None, "max_len": max_len,
                       "gpu": torch.cuda.get_device_name(0),
                       "memory": torch.cuda.get_device_properties(0).total_memory,
                       "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
                       "liger": liger_available()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cache_path():
    from foundation.models import cache_dir

    return cache_dir() / "micro_batch.json"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    import os

    path = _cache_path()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(cache, indent=1))
    os.replace(tmp, path)


def split_batch(effective: int, rows: int) -> tuple[int, int]:
    """(micro-batch, accumulation) for an effective batch when ``rows`` fit at once.

    >>> split_batch(48, 20)
    (16, 3)
    """
    accum = max(1, math.ceil(effective / rows))
    return math.ceil(effective / accum), accum
