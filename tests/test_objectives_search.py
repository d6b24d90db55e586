"""The objective as a search dimension: which objectives the data can feed (and why the others
are left out), how they enter the search space, the `tune:` keys that name them, and a real
study on preference data that searches two objectives."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from optuna.trial import FixedTrial

from conftest import write_preference_task
from foundation.config import TuneSearchOverride
from training.methods import METHODS, check_search_key
from training.objectives import OBJECTIVES, ObjectiveFacts, applicable
from training.space import SearchSpace, clean_params

PAIRS = [{"prompt": f"Which bay ships part {i}?", "chosen": f"Bay {i % 7}.", "rejected": "I cannot say."}
         for i in range(24)]
EVAL_PAIRS = [{"prompt": f"Where does part {i} ship from?", "chosen": f"Bay {i % 7}.", "rejected": "No idea."}
              for i in range(100, 106)]


@pytest.mark.parametrize("kind, expected", [
    ("sft", ["sft"]),
    ("preference", ["sft", "dpo", "kto", "orpo", "simpo"]),
    ("unpaired", ["sft", "kto"]),
])
def test_the_default_objectives_follow_the_data(kind, expected):
    chosen, excluded = applicable(None, ObjectiveFacts(data_kind=kind, grader="exact_match"))
    names = [o.name for o in chosen]
    assert names == expected
    assert set(names) | set(excluded) == set(OBJECTIVES) and not set(names) & set(excluded)
    assert all(excluded.values())


def test_every_exclusion_says_why():
    _, excluded = applicable(None, ObjectiveFacts(data_kind="sft", has_corpus=False, grader=None))
    assert "paired preference" in excluded["dpo"]
    assert "corpus" in excluded["cpt+sft"]
    assert "grades" in excluded["grpo"] or "metric" in excluded["grpo"]
    assert "preference" in excluded["rlhf"]
    _, excluded = applicable(None, ObjectiveFacts(data_kind="sft", has_corpus=True, grader="exact_match"))
    assert excluded["grpo"] == excluded["cpt+sft"] == "opt-in: add it to tune.objectives"
    chosen, excluded = applicable(["grpo", "dpo"], ObjectiveFacts(data_kind="sft", grader="exact_match"))
    assert [o.name for o in chosen] == ["grpo"] and "paired preference" in excluded["dpo"]
    assert excluded["sft"] == "not in tune.objectives"


def test_one_objective_adds_no_dimension_several_are_a_categorical():
    lora = METHODS["lora"]
    values = {"method": "lora", "lora.learning_rate": 1e-3, "lora.rank": 8, "lora.alpha": 16, "lora.dropout": 0.0,
              "lora.target_modules": "all-linear", "epochs": 1.0, "batch_size": 4, "warmup_ratio": 0.0,
              "weight_decay": 0.0}
    single = SearchSpace([lora], objectives=[OBJECTIVES["sft"]]).suggest(FixedTrial(values))
    assert single["objective"] == "sft" and "beta" not in single
    space = SearchSpace([lora], {"dpo.beta": TuneSearchOverride(choices=[0.1])},
                        [OBJECTIVES["dpo"], OBJECTIVES["simpo"]])
    params = space.suggest(FixedTrial({**values, "objective": "dpo", "dpo.beta": 0.1, "dpo.loss_type": "ipo"}))
    assert params["objective"] == "dpo" and params["beta"] == 0.1 and params["loss_type"] == "ipo"
    back = space.enqueueable("lora", {k: v for k, v in params.items() if k != "method"})
    assert back["objective"] == "dpo" and back["dpo.beta"] == 0.1
    assert clean_params(back)["loss_type"] == "ipo"
    assert space.enqueueable("lora", {"objective": "kto", "rank": 8}) is None  # not searched here


def test_search_keys_name_objectives():
    assert check_search_key("dpo.beta", TuneSearchOverride(low=0.05, high=0.2)) is None
    assert "has no hyperparameter 'gamma'" in check_search_key("dpo.gamma", TuneSearchOverride(low=1))
    assert check_search_key("beta", TuneSearchOverride(low=0.05)) is None


def _preference_task(folder, tune: str):
    return write_preference_task(folder, PAIRS, EVAL_PAIRS, steps=2, rag=False, extra=f"tune:\n{tune}")


def test_an_unknown_objective_is_one_line(tmp_path):
    task = _preference_task(tmp_path, "  objectives: [dpo, dpoo]")
    r = subprocess.run([sys.executable, "-m", "commands.cli", "validate", str(task)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "tune.objectives.1: unknown objective 'dpoo'" in r.stderr


def test_a_study_on_preference_data_searches_the_objectives(tmp_path):
    task = _preference_task(tmp_path, """\
  methods: [lora]
  objectives: [dpo, simpo]
  n_trials: 2
  max_steps: 2
  eval_every: 2
  pruner: none
  latency_queries: 1
  search:
    batch_size: {choices: [4]}
    epochs: {choices: [1.0]}""")
    r = subprocess.run([sys.executable, "-m", "commands.cli", "tune", str(task), "--quiet"], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    study = json.loads((tmp_path / "runs/prefs/results.json").read_text())["study"]
    assert study["training_objectives"] == ["dpo", "simpo"]
    assert {"sft", "orpo", "kto"} <= set(study["excluded_objectives"])
    trials = study["trials"]
    assert len(trials) == 2 and all(t["objective"] in ("dpo", "simpo") for t in trials)
    assert all("objective" not in t["params"] for t in trials)
    finished = [t for t in trials if t["state"] == "complete"]
    assert finished and all(0.0 <= t["validation_quality"] <= 1.0 for t in finished)  # preference accuracy
    assert all([s["name"] for s in t["training"]["stages"]] == [t["objective"]] for t in finished)
    assert all(t["training"]["reference"] == "precomputed" for t in finished if t["objective"] == "dpo")
