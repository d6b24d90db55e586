"""A real study on the tiny random model: pruning, resume after kill -9, Ctrl-C, OOM, export.

The data is built so that a few training steps make a visible difference: every answer is
"blue" six times, so a model that learned anything says "blue blue blue" (3 new tokens) and
token F1 separates a working learning rate (0.67 after 4 steps) from a useless one (0.0).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from advisor.tasks import load_task
from foundation.config import TuneSearchOverride
from foundation.data import load_splits
from foundation.results import Trial, TrialConfig, load_results

ANSWER = "blue blue blue blue blue blue"
# Full fine-tuning learns the tiny model's answer within 4 steps at this rate; LoRA is slower there.
GOOD = {"method": "full", "learning_rate": 1e-2, "epochs": 4.0, "batch_size": 4, "warmup_ratio": 0.0,
        "weight_decay": 0.0}
BAD = {**GOOD, "learning_rate": 1e-8}  # learns nothing in 4 steps: Hyperband stops it at the first rung


def write_task(folder: Path, *, name="tiny", tune: str = "", extra: str = "") -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    with open(folder / "data" / "train.jsonl", "w") as f:
        for i in range(30):
            f.write(json.dumps({"question": f"What colour is box {i}?", "answer": ANSWER}) + "\n")
    with open(folder / "data" / "eval.jsonl", "w") as f:
        for i in range(100, 106):
            f.write(json.dumps({"question": f"What colour is box {i}?", "answer": ANSWER}) + "\n")
    tune = tune or """\
      methods: [lora, full]
      n_trials: 2
      max_steps: 8
      eval_every: 4
      max_seq_length: 48
      latency_queries: 2
      search:
        full.learning_rate: {low: 1.0e-8, high: 0.05}
        batch_size: {choices: [4]}
        epochs: {choices: [4.0]}
    """
    (folder / "task.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        model: tiny-random
        device: cpu
        data: {{train: data/train.jsonl, eval: data/eval.jsonl, validation_fraction: 0.2}}
        prompt: {{system: "Answer.", template: "{{input}}"}}
        metric: {{name: token_f1}}
        generation: {{max_new_tokens: 3, latency_queries: 2}}
        {extra}
        tune:
        """) + textwrap.indent(textwrap.dedent(tune), "  "))
    return folder / "task.yaml"


@pytest.fixture(scope="module")
def pruned_study(tmp_path_factory):
    """Pilot (a good LoRA) first, then a deliberately bad learning rate; Hyperband, the default."""
    from tuner.study import run_study

    folder = tmp_path_factory.mktemp("study")
    task = load_task(write_task(folder))
    splits = load_splits(task)
    pilot = TrialConfig(method=GOOD["method"], params={k: v for k, v in GOOD.items() if k != "method"},
                        max_steps=8, max_seq_length=48)
    t0 = time.perf_counter()
    study = run_study(task, splits, run_dir=task.run_dir, pilot=pilot, enqueue=[BAD])
    return task, study, time.perf_counter() - t0


def test_bad_configuration_is_pruned_and_pilot_runs_first(pruned_study):
    task, study, seconds = pruned_study
    print(f"small study: {seconds:.1f} s, states {[t.state for t in study.trials]}")
    first, bad = study.trials
    assert first.params["learning_rate"] == GOOD["learning_rate"] and first.state == "complete"
    assert first.validation_quality > 0.5 and min(first.intermediate.values()) > 0.5
    assert bad.params["learning_rate"] == BAD["learning_rate"]
    assert bad.state == "pruned" and bad.steps == 4 and "pruned at step 4" in bad.note
    assert study.pruner.startswith("HyperbandPruner")
    assert study.status == "complete" and "tune.n_trials" in study.stopped_reason


def test_trial_records_measurements_and_pareto_and_best(pruned_study):
    task, study, _ = pruned_study
    best = next(t for t in study.trials if t.number == study.best_trial)
    assert best.number == 0 and best.pareto and best.eval_quality == study.best_eval.mean > 0.5
    assert study.best_eval.n == 6
    for field in ("trainable_params", "estimated_train_seconds", "train_seconds", "train_cost_usd",
                  "peak_memory_mb", "latency_p95_ms", "validation_quality", "trial_seconds"):
        assert getattr(best, field) is not None and getattr(best, field) > 0, field
    assert best.settings["micro_batch_size"] == 4 and best.worker
    run_dir = task.run_dir
    assert (run_dir / "study.db").exists() and (run_dir / "adapters" / "best" / "model.safetensors").exists()
    rows = (run_dir / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,method,params") and len(rows) == 3
    assert (run_dir / "predictions" / "tuned.jsonl").exists()
    # The study is a plain Optuna RDB study (what optuna-dashboard reads).
    loaded = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert [t.state.name for t in loaded.trials] == ["COMPLETE", "PRUNED"]


def test_export_of_a_full_fine_tune_loads_with_transformers(pruned_study, tmp_path):
    from transformers import AutoModelForCausalLM

    from tuner.export import export_best

    task, _, _ = pruned_study
    out = export_best(task.run_dir, tmp_path / "model", merge=True)
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0
    assert (out / "tokenizer_config.json").exists()


def test_pilot_config_maps_onto_the_space():
    from foundation.results import TrialConfig
    from training.methods import METHODS
    from training.space import SearchSpace

    space = SearchSpace([METHODS["lora"], METHODS["ia3"]])
    pilot = TrialConfig(method="lora", params={"rank": 8, "alpha": 16, "learning_rate": 1e-3, "dropout": 0.0,
                                               "target_modules": "attention", "epochs": 3.0, "batch_size": 8,
                                               "warmup_ratio": 0.0, "weight_decay": 0.0},
                        max_steps=60, max_seq_length=256)
    assert space.enqueueable(pilot.method, pilot.params) == {
        "method": "lora", "lora.rank": 8, "lora.alpha": 16, "lora.learning_rate": 1e-3, "lora.dropout": 0.0,
        "lora.target_modules": "attention", "epochs": 3.0, "batch_size": 8, "warmup_ratio": 0.0, "weight_decay": 0.0}
    assert SearchSpace([METHODS["ia3"]]).enqueueable("lora", pilot.params) is None
    # A value outside the user's narrowed choices is left to the sampler, not forced into the study.
    narrowed = SearchSpace([METHODS["lora"]], {"lora.rank": TuneSearchOverride(choices=[16, 32])})
    assert "lora.rank" not in narrowed.enqueueable("lora", pilot.params)


def test_pilot_from_the_finetune_baseline_is_the_study_s_first_trial_as_given(tmp_path):
    """The pilot is a fixed trial of the tuner's LoRA method: one mapping to training settings."""
    from baselines.finetune import pilot_config
    from training.methods import METHODS
    from training.space import SearchSpace, clean_params
    from training.trial import train_settings, trial_config

    task = load_task(write_task(tmp_path))
    config = pilot_config(task, max_seq_length=48)  # what `advise run` hands to run_study
    clean = clean_params(SearchSpace(list(METHODS.values())).enqueueable(config.method, config.params))
    assert clean == {"method": "lora", **config.params}
    # Sampled as a trial, the same parameters give the same training settings (up to the step bounds).
    as_trial = trial_config(clean, task.tune.model_copy(update={"max_steps": config.max_steps}), config.max_seq_length)
    as_trial.time_budget_s = config.time_budget_s
    assert train_settings(as_trial, micro_batch_size=8, seed=0) == train_settings(config, micro_batch_size=8, seed=0)


def test_cli_export_refuses_a_run_without_a_study(tmp_path):
    from commands.cli import main

    (tmp_path / "runs" / "x").mkdir(parents=True)
    assert main(["export", str(tmp_path / "runs" / "x"), "--out", str(tmp_path / "o")]) == 2


def test_resume_after_kill_9_keeps_finished_trials_and_retries_the_interrupted_one(tmp_path):
    from advisor.pipeline import tune_task

    task_file = write_task(tmp_path, tune="""\
      methods: [lora]
      n_trials: 2
      max_steps: 80
      eval_every: 80
      max_seq_length: 48
      latency_queries: 1
      heartbeat_s: 1
      search:
        lora.learning_rate: {low: 0.01, high: 0.05}
        batch_size: {choices: [4]}
        epochs: {choices: [4.0]}
    """)
    db = tmp_path / "runs" / "tiny" / "study.db"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    worker = subprocess.Popen([sys.executable, "-m", "commands.cli", "tune", str(task_file), "-q"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait until trial 0 is done and trial 1 is training
            states = _states(db)
            if (states[:1] == ["COMPLETE"] and len(states) == 2 and states[1] == "RUNNING" and _heartbeats(db) >= 2
                    and _sampled_everything(db, 1)):  # killed mid-sampling, the retry would get half its params
                break
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        else:
            pytest.fail(f"trial 1 never started: {_states(db)}")
        before = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").trials[0]
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    time.sleep(3)  # past the heartbeat grace period (2 × heartbeat_s)

    results = tune_task(load_task(task_file), resume=True)
    trials = {t.number: t for t in results.study.trials}
    assert trials[0].state == "complete" and trials[0].validation_quality == before.value
    assert trials[0].params["learning_rate"] == before.params["lora.learning_rate"]
    assert trials[1].state == "failed" and "heartbeat" in trials[1].note
    assert trials[2].retry_of == 1 and trials[2].state == "complete"
    assert trials[2].params == trials[1].params
    assert len(trials) == 3 and results.study.status == "complete"
    assert load_results(tmp_path / "runs" / "tiny").study.best_trial in (0, 2)

    # The best trial exports as a standard PEFT adapter, and merged as a plain transformers model.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from foundation.models import load_model, resolve_model
    from tuner.export import export_best

    out = export_best(tmp_path / "runs" / "tiny", tmp_path / "adapter")
    model = PeftModel.from_pretrained(load_model(resolve_model("tiny-random"), seed=0), out)
    merged = AutoModelForCausalLM.from_pretrained(export_best(tmp_path / "runs" / "tiny", tmp_path / "merged", merge=True))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


def _sampled_everything(db: Path, number: int) -> bool:
    """Trial ``number`` has all its parameters (the shared ones are sampled last)."""
    try:
        trial = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").trials[number]
    except Exception:  # not there yet
        return False
    return {"epochs", "batch_size", "warmup_ratio", "weight_decay"} <= set(trial.params)


def _heartbeats(db: Path) -> int:
    """Trials whose heartbeat is recorded: only those can be found stale after a kill."""
    import sqlite3

    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(DISTINCT trial_id) FROM trial_heartbeats").fetchone()[0]


def _states(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        return [t.state.name for t in optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").trials]
    except Exception:  # the study is not created yet
        return []


QUICK = """\
  methods: [lora]
  n_trials: 1
  max_steps: 2
  eval_every: 2
  max_seq_length: 48
  latency_queries: 1
  search:
    batch_size: {choices: [4]}
    epochs: {choices: [1.0]}
"""


def test_out_of_memory_retries_with_smaller_micro_batch(tmp_path, monkeypatch):
    import torch

    from training import training
    from tuner.study import run_study

    real, calls = training.train_sft, []

    def flaky(*args, settings, **kw):
        calls.append((settings.batch_size, settings.grad_accum))
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, settings=settings, **kw)

    monkeypatch.setattr(training, "train_sft", flaky)
    task = load_task(write_task(tmp_path, tune=QUICK))
    study = run_study(task, load_splits(task), run_dir=task.run_dir)
    assert calls == [(4, 1), (2, 2)]
    (trial,) = study.trials
    assert trial.state == "complete" and trial.settings["micro_batch_size"] == 2 and trial.settings["grad_accum"] == 2
    assert "out of memory at micro-batch 4; retried at 2 × 2 accumulation" in trial.note


def test_out_of_memory_at_micro_batch_1_fails_the_trial_with_reason(tmp_path, monkeypatch):
    import torch

    from training import training
    from tuner.study import run_study

    def always_oom(*args, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(training, "train_sft", always_oom)
    task = load_task(write_task(tmp_path, tune=QUICK.replace("n_trials: 1", "n_trials: 1\n  max_retry: 0")))
    study = run_study(task, load_splits(task), run_dir=task.run_dir)
    assert [t.state for t in study.trials] == ["failed"] * 3  # three in a row stop the search
    assert "out of memory even at micro-batch 1" in study.trials[0].note
    assert "in a row failed" in study.stopped_reason and study.best_trial is None


def test_ctrl_c_stops_cleanly_and_resume_retries(tmp_path, monkeypatch):
    from training import training
    from tuner.study import run_study

    real = training.train_sft

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_sft", interrupted)
    task = load_task(write_task(tmp_path, tune=QUICK))
    splits = load_splits(task)
    study = run_study(task, splits, run_dir=task.run_dir)
    assert study.status == "interrupted" and "Ctrl-C" in study.stopped_reason
    assert study.trials[0].state == "failed" and "interrupted" in study.trials[0].note

    monkeypatch.setattr(training, "train_sft", real)
    study = run_study(task, splits, run_dir=task.run_dir, resume=True)
    assert study.status == "complete"
    assert [(t.state, t.retry_of) for t in study.trials] == [("failed", None), ("complete", 0)]
    assert study.trials[1].params == study.trials[0].params


def test_nan_loss_prunes():
    from training.evaluate import pruning_callback

    class Control:
        should_training_stop = False

    class State:
        global_step, max_steps = 3, 10

    cb = pruning_callback(trial=None, evaluate=lambda m: 0.0, eval_every=5)
    control = Control()
    cb.on_log(None, State(), control, logs={"loss": 2.0, "grad_norm": float("nan")})
    assert control.should_training_stop and cb.reason == "grad norm became nan at step 3"
    cb.on_step_end(None, State(), control, model=None)  # no evaluation after a NaN


def test_selection_prefers_the_cheapest_of_statistically_tied_trials(tmp_path):
    from tuner.summary import pareto_front, select_trial

    task = load_task(write_task(tmp_path))

    def trial(n, q, cost, p95):
        return Trial(number=n, state="complete", method="lora", params={}, validation_quality=q,
                     train_cost_usd=cost, latency_p95_ms=p95)

    trials = [trial(0, 0.80, 6.0, 100), trial(1, 0.78, 0.2, 100), trial(2, 0.40, 0.1, 50), trial(3, 0.81, 5.0, 100)]
    scores = {0: [1.0] * 8 + [0.0] * 2, 1: [1.0] * 8 + [0.0] * 2, 2: [1.0] * 4 + [0.0] * 6, 3: [1.0] * 8 + [0.0] * 2}
    best, notes = select_trial(trials, scores, task)
    assert best == 1 and "tied" in notes[0]
    assert pareto_front(trials) == {1, 2, 3}
    task.constraints.latency_p95_ms = 60  # only trial 2 is fast enough
    assert select_trial(trials, scores, task)[0] == 2


@pytest.fixture(scope="module")
def tiny():
    from foundation.models import load_tokenizer, resolve_model

    source = resolve_model("tiny-random")
    return source, load_tokenizer(source)


def _tiny_with_biases():
    """The tiny model with bias terms on every projection (what BitFit trains)."""
    import torch
    from transformers import AutoModelForCausalLM

    from foundation.models import tiny_config

    config = tiny_config()
    config.attention_bias = config.mlp_bias = True
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("method", list(__import__("training.methods", fromlist=["METHODS"]).METHODS))
def test_every_registered_method_trains_saves_and_reloads(method, tiny, tmp_path):
    """One real training step per registered method through TRL, saved the way trials are, reloaded.
    A method that cannot apply on this machine is skipped with its registry reason (QLoRA off CUDA)."""
    import torch
    from optuna.trial import FixedTrial
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from foundation.config import PromptConfig
    from foundation.models import load_model
    from foundation.records import Record
    from training.artifacts import prepare_adapter, save_trained
    from training.methods import METHODS
    from training.modelfacts import model_facts
    from training.space import SearchSpace
    from training.training import TrainSettings, train_sft

    source, tokenizer = tiny
    m = METHODS[method]
    make_base = _tiny_with_biases if method == "bitfit" else (lambda: load_model(source, seed=0))
    base = make_base()
    facts = model_facts(base)
    ok, reason = m.check(facts)
    if not ok:
        pytest.skip(f"{method} does not apply here: {reason}")
    values = {"method": method, "epochs": 1.0, "batch_size": 2, "warmup_ratio": 0.0, "weight_decay": 0.0}
    for hp in m.hyperparameters:  # the top of every range: the largest adapter of each kind
        values[f"{method}.{hp.name}"] = hp.choices[-1] if hp.choices else hp.high
    params = SearchSpace([m]).suggest(FixedTrial(values))
    adapter, init_dir = prepare_adapter(m, params, facts)
    expected_trainable = m.trainable_parameters(base, adapter)
    records = [Record(input=f"What colour is box {i}?", output=ANSWER) for i in range(4)]
    result = train_sft(base, tokenizer, records, prompt=PromptConfig(system="A."), adapter=adapter,
                       settings=TrainSettings(max_steps=1, batch_size=2, learning_rate=params["learning_rate"],
                                              max_seq_length=32))
    assert result.steps == 1 and result.trainable_params > 0 and math.isfinite(result.final_loss)
    if method != "pissa":  # PiSSA's estimate counts a rank capped only after its SVD
        assert expected_trainable == result.trainable_params
    save_trained(m, result.model, tmp_path / "out", init_dir)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = result.model(input_ids=ids).logits
        if m.full_model:
            loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
        else:
            loaded = PeftModel.from_pretrained(make_base(), tmp_path / "out").eval()
        assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-3)


@pytest.mark.cuda
def test_qlora_trial_on_cuda(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("bitsandbytes")
    from tuner.study import run_study

    tune = QUICK.replace("methods: [lora]", "methods: [qlora, lora]").replace("n_trials: 1", "n_trials: 2")
    task = load_task(write_task(tmp_path, tune=tune).parent / "task.yaml")
    task.device = "cuda"
    study = run_study(task, load_splits(task), run_dir=task.run_dir, enqueue=[{"method": "qlora"}, {"method": "lora"}])
    assert [t.state for t in study.trials] == ["complete", "complete"], [t.note for t in study.trials]
    assert "qlora" not in study.excluded_methods
    assert all(math.isfinite(t.validation_quality) for t in study.trials)


def test_money_budget_and_failures_in_a_row_stop_the_study():
    from types import SimpleNamespace

    from tuner.study import StopReason, _budget_callback, _failures_callback

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stop = StopReason()
    study = optuna.create_study(direction="maximize")

    def costs_a_dollar(trial):
        trial.set_user_attr("trial_cost_usd", 1.0)
        return 0.5

    study.optimize(costs_a_dollar, n_trials=10, callbacks=[_budget_callback(SimpleNamespace(budget_usd=2.5), stop)])
    assert len(study.trials) == 3 and "money budget spent: $3.00 of tune.budget_usd $2.50" in stop.text

    stop = StopReason()
    failing = optuna.create_study()

    def broken(trial):
        trial.set_user_attr("note", "ValueError: broken setup")
        raise ValueError("broken setup")

    failing.optimize(broken, n_trials=10, catch=(ValueError,), callbacks=[_failures_callback(stop)])
    assert len(failing.trials) == 3 and stop.text.endswith("ValueError: broken setup")


def test_resume_with_other_search_ranges_is_one_clear_error(tmp_path):
    """The study's distributions are fixed when it starts: resuming with other ranges is refused
    before any trial runs, naming the file and the key, instead of failing trial after trial."""
    task_file = write_task(tmp_path, tune="""\
      methods: [lora]
      search:
        lora.learning_rate: {low: 0.01, high: 0.05}
    """)
    db = tmp_path / "runs" / "tiny" / "study.db"
    db.parent.mkdir(parents=True)
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{db}", direction="maximize")
    study.set_user_attr("methods", ["lora"])
    study.set_user_attr("search", {"lora.learning_rate": {"low": 0.001, "high": 0.05}})

    r = subprocess.run([sys.executable, "-m", "commands.cli", "tune", str(task_file), "--resume", "-q"],
                       capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in r.stderr
    assert "task.yaml: tune.search:" in err[0] and "changed: lora.learning_rate" in err[0]
    assert optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").trials == []  # nothing ran


def test_a_configuration_already_trained_is_not_trained_again(tmp_path):
    """TPE re-samples points of a discrete space; training is seeded, so a repeat would only
    spend compute to get the same result. The repeat is pruned at once, with the reason."""
    from advisor.pipeline import tune_task

    task_file = write_task(tmp_path, tune=QUICK.replace("n_trials: 1", "n_trials: 3") + """\
    lora.learning_rate: {choices: [0.001]}
    lora.rank: {choices: [4]}
    lora.alpha: {choices: [8]}
    lora.dropout: {choices: [0.0]}
    lora.target_modules: {choices: [all-linear]}
    warmup_ratio: {choices: [0.0]}
    weight_decay: {choices: [0.0]}
""")
    trials = sorted(tune_task(load_task(task_file)).study.trials, key=lambda t: t.number)
    assert trials[0].state == "complete" and trials[0].steps == 2
    assert len(trials) == 3
    for t in trials[1:]:
        assert t.params == trials[0].params
        assert t.state == "pruned" and t.steps == 0 and t.train_seconds is None
        assert t.note == "same configuration as trial 0 (complete): not trained again"
