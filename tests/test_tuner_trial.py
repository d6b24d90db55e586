"""One trial on its own: ``run_trial`` with a trial from Optuna's ask/tell, no study.optimize."""
from __future__ import annotations

import optuna
import pytest

from advisor.tasks import load_task
from foundation.data import load_splits
from foundation.models import load_model, load_tokenizer, resolve_model
from foundation.results import TrialConfig
from test_tuner_study import QUICK, write_task


@pytest.fixture
def trial_context(tmp_path):
    from training.evaluate import Evaluator
    from training.methods import METHODS
    from training.modelfacts import model_facts
    from training.space import SearchSpace
    from training.trial import TrainingKit, TrialContext

    task = load_task(write_task(tmp_path, tune=QUICK))
    splits = load_splits(task)
    source = resolve_model(task.model)
    tokenizer = load_tokenizer(source)
    kit = TrainingKit(task=task, records=splits.train, device="cpu", source=source, tokenizer=tokenizer,
                      facts=model_facts(load_model(source, seed=0)))
    return TrialContext(kit=kit, run_dir=task.run_dir, space=SearchSpace([METHODS["lora"], METHODS["full"]]),
                        local_excluded={}, validation=Evaluator(task, tokenizer, splits.validation),
                        price_per_hour=0.1, flops_per_second=1e10, tokens_per_record=30.0, max_seq_length=48)


def _ask(study: optuna.Study, params: dict):
    study.enqueue_trial(params)
    return study.ask()


def test_run_trial_through_ask_and_tell(trial_context):
    from training.artifacts import TrialRecord
    from training.trial import run_trial

    study = optuna.create_study(direction="maximize")
    trial = _ask(study, {"method": "full", "full.learning_rate": 1e-2, "epochs": 1.0, "batch_size": 4,
                         "warmup_ratio": 0.0, "weight_decay": 0.0})
    value = run_trial(trial, trial_context)
    study.tell(trial, value)
    done = study.trials[0]
    assert done.state.name == "COMPLETE" and done.value == value == done.user_attrs["validation_quality"]
    u = done.user_attrs
    assert u["steps"] == 2 and len(u["validation_scores"]) == len(trial_context.validation.records)
    assert u["trainable_params"] == u["total_params"] > 0 and u["estimated_train_seconds"] > 0
    assert u["train_cost_usd"] > 0 and u["latency_p95_ms"] > 0 and u["trial_seconds"] >= u["train_seconds"]
    record = TrialRecord.read(trial_context.run_dir / u["adapter_dir"])
    assert record.trial == 0 and record.method == "full" and record.full_model


def test_a_repeated_configuration_is_pruned_without_training(trial_context, monkeypatch):
    from training import training
    from training.trial import run_trial

    study = optuna.create_study(direction="maximize")
    params = {"method": "lora", "lora.rank": 4, "lora.alpha": 8, "lora.dropout": 0.0, "lora.learning_rate": 1e-3,
              "lora.target_modules": "attention", "epochs": 1.0, "batch_size": 4, "warmup_ratio": 0.0,
              "weight_decay": 0.0}
    first = _ask(study, params)
    study.tell(first, run_trial(first, trial_context))
    monkeypatch.setattr(training, "train_sft", lambda *a, **k: pytest.fail("trained a repeated configuration"))
    second = _ask(study, params)
    with pytest.raises(optuna.TrialPruned):
        run_trial(second, trial_context)
    assert second.user_attrs["duplicate_of"] == 0


def test_train_config_halves_the_micro_batch_on_out_of_memory(trial_context, monkeypatch):
    import torch

    from training import training
    from training.trial import train_config

    real, seen = training.train_sft, []

    def oom_once(*args, settings, **kw):
        seen.append((settings.batch_size, settings.grad_accum))
        if len(seen) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(*args, settings=settings, **kw)

    monkeypatch.setattr(training, "train_sft", oom_once)
    config = TrialConfig(method="lora", params={"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear",
                                                "learning_rate": 1e-3, "epochs": 1.0, "batch_size": 8},
                         max_steps=1, max_seq_length=48)
    trained = train_config(config, trial_context.kit, micro_batch_size=8, label="t")
    assert seen == [(8, 1), (4, 2)] and trained.result.steps == 1
    assert trained.notes == ["out of memory at micro-batch 8; retried at 4 × 2 accumulation"]
