"""What every run starts with, whichever command starts it (``advise run``, ``advise tune``, the
service): quiet libraries, the environment it ran in, and an empty results record."""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
from pathlib import Path

from foundation import __version__
from foundation.errors import AdviseError
from foundation.paths import display_path
from foundation.results import Results


def quiet_libraries() -> None:
    """Library progress bars, info logs and warnings the user did not cause would drown our own
    output and make a late error more than one line."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's own bars (reference log-probs) read only this
    # Notices the libraries raise about each other (renamed arguments, deprecations), not about the task.
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    # datasets' fingerprinting catches everything (a Ctrl-C included, which interrupt.check() raises
    # again at the next step) and then warns that a transform "couldn't be hashed": not the user's to act on.
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("torch", "accelerate", "peft", "trl", "sentence_transformers", "faiss", "httpx", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def environment(device: str) -> dict:
    """The machine and library versions, recorded in results.json."""
    import torch

    env = {"python": platform.python_version(), "platform": platform.platform(), "device": device,
           "cpu": _cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    for pkg in ("torch", "transformers", "peft", "trl", "datasets", "sentence_transformers", "faiss", "optuna"):
        try:
            env[pkg] = __import__(pkg).__version__
        except Exception:  # optional or oddly packaged: record that it is absent
            env[pkg] = None
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
    env["advise"] = __version__
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def new_results(task, device: str, data_stats: dict) -> Results:
    """An empty results record for ``task``, marked interrupted until a command completes it. The
    task is kept without secrets (a ``tune.storage`` URL's password): results.json gets shared."""
    from foundation.secrets import redact_values

    return Results(advise_version=__version__, status="interrupted",
                   created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   task=redact_values(task.model_dump(mode="json")), environment=environment(device), data=data_stats,
                   candidates=[])


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, *, shared: bool = False, task_file: str | None = None):
    """Hold ``run_dir`` for this process: ``advise run`` exclusively; ``advise tune`` workers share it
    (a sweep's workers on one machine write the same folder) but never alongside a run. The lock
    is the kernel's (``flock``), so a killed process releases it."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: nothing to hold
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".advise.lock"
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise AdviseError(f"{display_path(run_dir)} is in use by {holder}; wait for it to finish, or give this "
                              "task another name or output.dir", file=task_file, where="output.dir") from None
        if not shared:
            handle.seek(0)
            handle.truncate()
            handle.write(f"advise run (pid {os.getpid()})")
            handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
