"""Threads for torch on a CPU that other processes share.

torch starts one thread per core, and each small operation waits at a barrier for all of them: when
another process holds a core, the thread on it is descheduled and the step waits for it. Measured
on 2 cores with another process spinning on one (``bench/bench_threads.py``), the demo's plain pilot
ran a step in 2.2 s on 1 thread against 4.2 to 10.7 s on 2; on a quiet machine 2 threads were kept
(1.26 vs 1.24 s); with the other process busy half the time, 1 and 2 threads were even.
So before each stage ``advise run`` counts the cores other processes used over half a second and
takes one thread per core they leave free, at least 1 and at most torch's own count.

``ADVISE_THREADS=n`` pins the count (results at a fixed count repeat bit for bit; between counts,
float sums may differ in their last bits); so does ``OMP_NUM_THREADS``, which torch reads itself.
"""
from __future__ import annotations

import os

from foundation.errors import AdviseError

ENV = "ADVISE_THREADS"
WINDOW_S = 0.5
_CEILING: int | None = None  # torch's own thread count, before the first change


def choose_threads(ceiling: int, cpus: int, others_busy: float) -> int:
    """Threads for the cores ``others_busy`` (in cores) leaves free of ``cpus``, within 1..``ceiling``.

    >>> choose_threads(2, 2, 0.1), choose_threads(2, 2, 0.5), choose_threads(2, 2, 0.6), choose_threads(2, 2, 3.0)
    (2, 2, 1, 1)
    >>> choose_threads(8, 16, 4.0)
    8
    """
    free = cpus - others_busy
    return max(1, min(ceiling, int(free + 0.5)))


def others_busy_cpus(window_s: float = WINDOW_S) -> float:
    """Cores that processes other than this one kept busy over ``window_s`` seconds (steal time
    included, so a virtual machine's noisy neighbours count), on the cores this process may use."""
    import time

    import psutil

    mine = _allowed_cpus()
    own = psutil.Process()
    own_start, start = sum(own.cpu_times()[:2]), time.perf_counter()
    busy = psutil.cpu_percent(interval=window_s, percpu=True)
    elapsed = time.perf_counter() - start
    ours = (sum(own.cpu_times()[:2]) - own_start) / max(elapsed, 1e-6)
    total = sum(busy[i] for i in mine if i < len(busy)) / 100
    return max(0.0, total - ours)


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def pinned_threads() -> int | None:
    """``ADVISE_THREADS`` as a count, or None when unset; anything else is one clear error."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise AdviseError(f"{raw!r}: expected a whole number of threads, at least 1 (or unset it)",
                          file="environment", where=ENV)
    return int(raw)


def threads_now(device: str = "cpu") -> int:
    """The thread count :func:`fit_threads` would set now, without setting it."""
    global _CEILING
    import torch

    if _CEILING is None:
        _CEILING = torch.get_num_threads()
    pinned = pinned_threads()
    if pinned is not None:
        return pinned
    if device.startswith("cuda") or os.environ.get("OMP_NUM_THREADS") or _CEILING == 1:
        return torch.get_num_threads()  # the GPU does the work / the user chose / nothing to choose
    try:
        others = others_busy_cpus()
    except Exception:  # no CPU readings on this platform (psutil): torch's own count
        return _CEILING
    return choose_threads(_CEILING, len(_allowed_cpus()), others)


def fit_threads(device: str = "cpu") -> int:
    """Set torch's thread count for the next stage (see the module's docstring) and return it."""
    import torch

    n = threads_now(device)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n
