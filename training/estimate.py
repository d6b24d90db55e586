"""A trial's training time, estimated from FLOPs before it runs (recorded next to the measured time)."""
from __future__ import annotations

import time

# Share of the matmul peak that a training step reaches: a LoRA r=8 step of SmolLM2-135M (batch 8 × 64
# tokens) took 2.6–3.8 s on 2 CPU cores where the measured matmul speed allows 1.7 s.
EFFICIENCY = 0.5


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

    >>> round(estimate_train_seconds(100, 100, 10, 1, 6000 / EFFICIENCY), 6)
    1.0
    """
    flops = (4 * total_params + 2 * trainable_params) * tokens_per_step * steps
    return flops / (flops_per_second * EFFICIENCY)


def mean_record_tokens(lengths: list[tuple[int, int]], max_len: int) -> float:
    """Mean tokens a training record feeds the model, from ``training.lengths.record_token_lengths``."""
    clipped = [min(full, max_len) for _, full in lengths[:256]]
    return sum(clipped) / max(1, len(clipped))
