"""Shared helpers for the benchmarks: machine info, timing statistics, result files, a short table.

Every benchmark measures our code and a reference side by side in the same process, with the
repetitions interleaved (ours, reference, ours, reference, ...) so that noise from other work on
the machine hits both sides alike, and reports the ratio of the medians next to the absolute
figures. Results go to ``bench/results/<name>.json``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

if str(ROOT) not in sys.path:  # run as `python bench/bench_x.py` from anywhere
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# BENCH_THREADS=n pins torch / faiss / BLAS to n threads in this process and in the subprocesses it
# starts (it must be set before torch is imported, which every benchmark does after this module).
# On a shared, oversubscribed CPU the default (one thread per core) makes every small op wait at
# an OpenMP barrier for a descheduled thread: a batch-1 forward of SmolLM2-135M measured 2-4 s
# with 2 threads vs 0.2 s with 1 thread on the 2-core machine under load. Unset = torch's default.
from foundation.runinfo import quiet_libraries  # noqa: E402,F401  (the product's own, for the benches)

BENCH_THREADS = os.environ.get("BENCH_THREADS")
if BENCH_THREADS:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = BENCH_THREADS


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine_info() -> dict:
    """CPU model, cores, GPU (if any) and the versions of the libraries the benchmarks touch."""
    info = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": None,
        "bench_threads": BENCH_THREADS,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "gpu": None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("torch", "transformers", "peft", "trl", "faiss-cpu", "faiss-gpu", "sentence-transformers",
                      "optuna", "advise")},
    }
    info["versions"] = {k: v for k, v in info["versions"].items() if v}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def machine_line(info: dict | None = None) -> str:
    info = info or machine_info()
    v = info["versions"]
    parts = [f"{info['cpu']} ({info['cpu_cores']} cores, torch threads {info['torch_threads']}, "
             f"load {info['load_average_1m']:.1f})", f"GPU: {info['gpu'] or 'none'}"]
    parts += [f"{k} {v[k]}" for k in ("torch", "transformers", "peft", "trl", "faiss-cpu") if k in v]
    return " · ".join(parts)


def percentile(values, q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def median(values) -> float:
    return float(statistics.median(values)) if values else float("nan")


def write_result(name: str, *, figures: dict, parameters: dict, target: dict | None = None,
                 status: str = "ok", notes: list[str] | None = None, raw: dict | None = None) -> Path:
    """Write ``bench/results/<name>.json`` with the figures, the machine and the date."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "status": status,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": parameters,
        "target": target,
        "figures": figures,
        "notes": notes or [],
    }
    if raw is not None:
        payload["raw"] = raw
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:
        pass
    return str(obj)


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if x != x:
            return "nan"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def print_table(rows: list[tuple], header: tuple = ("metric", "value")) -> None:
    """A plain aligned table on stdout (no dependencies, readable in CI logs)."""
    rows = [tuple(fmt(c) for c in r) for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None or value != value:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def synthetic_tickets(n: int, seed: int = 0):
    """Deterministic ticket-routing records (input ~20-60 tokens, one-word label) for training/generation
    benchmarks, so the benchmarks do not depend on any example folder."""
    import random

    from foundation.records import Record

    rng = random.Random(seed)
    queues = {
        "billing": ["I was charged twice for my subscription", "my invoice shows the wrong VAT number",
                    "please refund the last payment", "the card on file expired and the payment failed"],
        "technical": ["the app crashes when I open the settings page", "I cannot log in since the update",
                      "the export to CSV produces an empty file", "sync between my phone and laptop stopped"],
        "shipping": ["my parcel has not arrived after two weeks", "the tracking number does not work",
                     "the box arrived damaged", "can I change the delivery address of order 5531"],
        "account": ["please delete my account and all data", "how do I change the email on my profile",
                    "I want to add a second user to our team plan", "my username shows someone else's name"],
    }
    extras = ["", " Thanks.", " This is urgent, we have a deadline tomorrow.",
              " I already tried restarting everything twice and it did not help at all.",
              " Order reference A-{0}, customer since {1}.", " Kind regards, Dana from the Lisbon office."]
    records = []
    labels = sorted(queues)
    for i in range(n):
        label = labels[i % len(labels)]
        text = rng.choice(queues[label]) + rng.choice(extras).format(rng.randint(1000, 9999), rng.randint(2010, 2024))
        records.append(Record(input=text, output=label))
    return records


@contextlib.contextmanager
def core_taken(busy: bool = True):
    """While the block runs, another process spins on one core (``while True: pass``), as a second
    job or a neighbour on a shared machine does; nothing when ``busy`` is False."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        yield
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
