"""`advise run` end to end on preference data (the tiny model): every candidate is scored by
preference accuracy on the held-out pairs, the pilot trains SFT on the chosen answers then DPO,
the task's metric is a second figure, and the report says what the quality measures."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import write_preference_task

PAIRS = [{"prompt": f"Which bay ships part {i}?", "chosen": f"Part {i} ships from bay {i % 7}.",
          "rejected": "I am not able to help with that."} for i in range(24)]
EVAL = [{"prompt": f"Where does part {i} ship from?", "chosen": f"Part {i} ships from bay {i % 7}.",
         "rejected": "Sorry, no idea."} for i in range(100, 108)]
UNPAIRED = ([{"prompt": f"Which bay ships part {i}?", "completion": f"Bay {i % 7}.", "label": True} for i in range(12)]
            + [{"prompt": f"Which bay ships part {i}?", "completion": "Go away.", "label": False} for i in range(12)])


def _task(folder, train, eval_rows, extra: str = "") -> str:
    return str(write_preference_task(folder, train, eval_rows, extra=extra))


def _advise(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "commands.cli", *args], capture_output=True, text=True, timeout=1200,
                          cwd=cwd)


def test_run_on_paired_preference_data(tmp_path):
    task = _task(tmp_path, PAIRS, EVAL, "metric: {name: contains}")
    v = _advise("validate", task)
    assert v.returncode == 0 and "data kind preference" in v.stdout, v.stderr
    r = _advise("run", task, "--json", "--no-tune")
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((tmp_path / "runs/prefs/results.json").read_text())
    assert results["data"]["kind"] == "preference"
    names = [c["name"] for c in results["candidates"]]
    assert names == ["prompt-zero-shot", "prompt-few-shot", "rag", "finetune", "finetune+rag"]
    for c in results["candidates"]:
        assert len(c["scores"]) == len(EVAL) and set(c["scores"]) <= {0.0, 0.5, 1.0}  # pairs won, tied, lost
        assert "preference_margin_mean" in c["details"]
        assert c["details"]["generation_metric"]["name"] == "contains"  # the task's metric, as a second figure
    pilot = next(c for c in results["candidates"] if c["name"] == "finetune")
    assert pilot["config"]["objective"] == "sft+dpo"
    assert [s["name"] if isinstance(s, dict) else s for s in pilot["details"]["stages"]] == ["sft", "dpo"]
    assert pilot["details"]["learning_curve"]["steps"]
    html = (tmp_path / "runs/prefs/report.html").read_text()
    assert "preference accuracy" in html and "This is preference data" in html
    summary = json.loads(r.stdout)
    assert summary["verdict"]["winner"] in names


def test_run_on_unpaired_preference_data(tmp_path):
    eval_rows = ([{"prompt": f"Where is part {i} shipped from?", "completion": f"Bay {i % 7}.", "label": True}
                  for i in range(100, 104)]
                 + [{"prompt": f"Where is part {i} shipped from?", "completion": "Go away.", "label": False}
                    for i in range(100, 104)])
    task = _task(tmp_path, UNPAIRED, eval_rows)
    r = _advise("run", task, "--quiet", "--no-tune")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr == ""  # --quiet: not even TRL's bar for the reference log-probs
    results = json.loads((tmp_path / "runs/prefs/results.json").read_text())
    assert results["data"]["kind"] == "unpaired"
    pilot = next(c for c in results["candidates"] if c["name"] == "finetune")
    assert pilot["config"]["objective"] == "sft+kto"
    assert all(set(c["scores"]) <= {0.0, 1.0} for c in results["candidates"])
