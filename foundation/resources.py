"""Peak memory of a stage: process RSS sampled in a thread on CPU, the allocator's peak on CUDA."""
from __future__ import annotations

import threading


class PeakMemory:
    """Context manager; ``.peak_mb`` after exit.

    >>> with PeakMemory() as m:
    ...     _ = bytearray(10_000_000)
    >>> m.peak_mb > 0
    True
    """

    def __init__(self, device: str = "cpu", interval_s: float = 0.05):
        self.device, self.interval = device, interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self):
        import psutil

        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
            return self
        self._proc = psutil.Process()
        self.peak_mb = self._proc.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            import torch

            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
            return False
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)
        return False
