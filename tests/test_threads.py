"""Threads on a shared CPU (foundation.threads): busy cores take threads away, ADVISE_THREADS pins
the count, and results.json says what each stage ran on."""
import json
import subprocess
import sys
import time

import pytest
import torch

from conftest import write_task
from foundation.errors import AdviseError
from foundation.threads import _allowed_cpus, fit_threads, others_busy_cpus
from test_cli import advise

HOG = "while True: pass"


@pytest.fixture
def torch_threads_restored(monkeypatch):
    monkeypatch.delenv("ADVISE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cores_busy_with_other_processes_leave_one_thread(torch_threads_restored):
    cores = len(_allowed_cpus())
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        others = others_busy_cpus()
        threads = fit_threads()
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert others >= cores - 0.5, others  # every core is someone else's
    assert threads == 1 and torch.get_num_threads() == 1


def test_advise_threads_pins_the_count_and_a_bad_value_is_one_error(torch_threads_restored, monkeypatch):
    monkeypatch.setenv("ADVISE_THREADS", "1")
    assert fit_threads() == 1 and torch.get_num_threads() == 1
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("ADVISE_THREADS", bad)
        with pytest.raises(AdviseError, match="ADVISE_THREADS"):
            fit_threads()


def test_each_stage_records_its_threads_and_a_bad_pin_stops_before_anything_runs(tmp_path, monkeypatch):
    path = write_task(tmp_path / "t")
    path.write_text(path.read_text().replace("  finetune: {max_steps: 3", "  finetune_rag: {enabled: false}\n  finetune: {max_steps: 2"))
    monkeypatch.setenv("ADVISE_THREADS", "many")
    r = advise("run", path, "--no-tune")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: environment: ADVISE_THREADS: 'many': expected a whole number of threads, at least 1 (or unset it)"], r.stderr
    assert not (tmp_path / "t/runs").exists()

    monkeypatch.setenv("ADVISE_THREADS", "1")
    r = advise("run", path, "--quiet", "--no-tune")
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((tmp_path / "t/runs/tiny-task/results.json").read_text())
    assert results["environment"]["torch_threads_by_stage"] == {"prompt": 1, "rag": 1, "finetune": 1}
