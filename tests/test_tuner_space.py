"""The search space and the method registry, without training: FixedTrial and ask/tell."""
from __future__ import annotations

import math
import textwrap

import optuna
import pytest
from optuna.trial import FixedTrial

from advisor.tasks import load_task
from foundation.config import TuneSearchOverride
from foundation.errors import AdviseError
from training.methods import METHODS, applicable, register_method
from training.modelfacts import ModelFacts, full_ft_memory_gb
from training.space import CATALOGUE, SHARED, Hyperparameter, SearchSpace, clean_params, micro_batches

SMOLLM2 = ModelFacts(attention_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                     mlp_modules=["gate_proj", "up_proj", "down_proj"], has_bias=False, total_params=134_515_008,
                     hidden_size=576, device="cpu", memory_budget_gb=64.0)
SHARED_VALUES = {"epochs": 2.0, "batch_size": 8, "warmup_ratio": 0.05, "weight_decay": 0.01}


def fixed(method: str, pick=lambda hp: hp.choices[0] if hp.choices else hp.low, **values) -> dict:
    """Optuna parameters for ``method``: its hyperparameters at ``pick`` unless given."""
    params = {"method": method, **SHARED_VALUES}
    for hp in METHODS[method].hyperparameters:
        params[f"{method}.{hp.name}"] = values.get(hp.name, pick(hp))
    return params


def _branches():
    """Every method × every value of each of its categorical hyperparameters."""
    out = []
    for name, method in METHODS.items():
        cats = [hp for hp in method.hyperparameters if hp.choices]
        if not cats:
            out.append((name, {}))
        for hp in cats:
            out.extend((name, {hp.name: c}) for c in hp.choices)
    return out


def test_registry_has_every_method_of_the_issue():
    assert set(METHODS) == {"lora", "dora", "rslora", "pissa", "loha", "lokr", "vera", "ia3", "oft", "prompt_tuning",
                            "prefix_tuning", "p_tuning", "bitfit", "full", "qlora"}


@pytest.mark.parametrize("method,values", _branches(), ids=lambda v: v if isinstance(v, str) else "-".join(
    f"{k}={c}" for k, c in v.items()) or "plain")
def test_every_branch_samples_its_own_parameters_and_builds(method, values):
    space = SearchSpace(list(METHODS.values()))
    params = space.suggest(FixedTrial(fixed(method, **values)))
    own = {hp.name for hp in METHODS[method].hyperparameters}
    assert set(params) == {"method"} | own | {hp.name for hp in SHARED}
    assert params["method"] == method
    for k, v in values.items():
        assert params[k] == v
    built = METHODS[method].build(params, SMOLLM2)
    from peft import PeftConfig

    if METHODS[method].full_model:
        assert callable(built) and not isinstance(built, PeftConfig)
    else:
        assert isinstance(built, PeftConfig)
        targets = getattr(built, "target_modules", None)
        if targets is not None:
            expected = SMOLLM2.attention_modules if params["target_modules"] == "attention" else SMOLLM2.all_linear
            assert set(targets) == set(expected)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_has_a_learning_rate_range_and_families_are_ordered(method):
    lr = next(hp for hp in METHODS[method].hyperparameters if hp.name == "learning_rate")
    assert lr.log and 0 < lr.low < lr.high < 1


def test_lora_learning_rate_is_centred_near_ten_times_full_fine_tuning():
    def centre(name):
        lr = next(hp for hp in METHODS[name].hyperparameters if hp.name == "learning_rate")
        return math.sqrt(lr.low * lr.high)

    assert 5 <= centre("lora") / centre("full") <= 20


def test_ask_tell_over_the_whole_space_gives_consistent_conditional_parameters():
    space = SearchSpace(list(METHODS.values()))
    sampler = optuna.samplers.TPESampler(group=True, seed=0, n_startup_trials=5)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for name in METHODS:  # every method at least once, then the sampler's own picks
        study.enqueue_trial({"method": name})
    seen = set()
    for _ in range(len(METHODS) + 15):
        trial = study.ask()
        params = space.suggest(trial)
        seen.add(params["method"])
        own = {f"{params['method']}.{hp.name}" for hp in METHODS[params["method"]].hyperparameters}
        assert set(trial.params) == {"method"} | own | {hp.name for hp in SHARED}
        assert clean_params(trial.params) == params
        study.tell(trial, float(params["method"] in ("lora", "dora")) + params["warmup_ratio"])
    assert seen == set(METHODS)


def test_overrides_apply_to_all_methods_or_to_one():
    overrides = {"learning_rate": TuneSearchOverride(low=1e-4, high=2e-4),
                 "lora.rank": TuneSearchOverride(choices=[8, 16]),
                 "target_modules": TuneSearchOverride(choices=["all-linear"])}
    space = SearchSpace([METHODS["lora"], METHODS["dora"]], overrides)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        p = space.suggest(trial)
        assert 1e-4 <= p["learning_rate"] <= 2e-4
        assert p["target_modules"] == "all-linear"
        if p["method"] == "lora":
            assert p["rank"] in (8, 16)
        study.tell(trial, 0.0)
    assert isinstance(study.trials[0].distributions["method"], optuna.distributions.CategoricalDistribution)


def test_optuna_params_round_trip():
    space = SearchSpace(list(METHODS.values()))
    clean = space.suggest(FixedTrial(fixed("vera")))
    assert clean_params(space.optuna_params(clean)) == clean


def test_exclusions_carry_reasons():
    chosen, excluded = applicable(None, SMOLLM2)
    assert "bitfit" in excluded and "bias" in excluded["bitfit"]
    assert "qlora" in excluded and "CUDA" in excluded["qlora"]
    assert "full" not in excluded
    assert {m.name for m in chosen} == set(METHODS) - {"bitfit", "qlora"}


def test_full_fine_tuning_is_excluded_over_the_memory_budget():
    small = ModelFacts(**{**SMOLLM2.__dict__, "memory_budget_gb": 1.0})
    _, excluded = applicable(["full", "lora"], small)
    assert set(excluded) == {"full"}
    assert f"{full_ft_memory_gb(small):.1f} GB" in excluded["full"] and "tune.memory_budget_gb" in excluded["full"]


def test_bitfit_applies_when_the_model_has_biases_and_qlora_with_cuda_and_bnb():
    gpu = ModelFacts(**{**SMOLLM2.__dict__, "has_bias": True, "device": "cuda", "bitsandbytes": True})
    chosen, excluded = applicable(["bitfit", "qlora"], gpu)
    assert excluded == {} and {m.name for m in chosen} == {"bitfit", "qlora"}
    no_bnb = ModelFacts(**{**gpu.__dict__, "bitsandbytes": False})
    assert "bitsandbytes" in applicable(["qlora"], no_bnb)[1]["qlora"]


def test_register_method_checks_its_entry():
    with pytest.raises(ValueError, match="already registered"):
        register_method("lora", "lora", "again", learning_rate=(1e-4, 1e-3), build=lambda p, f: None)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        register_method("x1", "lora", "x", learning_rate=(1e-4, 1e-3), hyperparameters=("rnak",),
                        build=lambda p, f: None)
    with pytest.raises(ValueError, match="family"):
        register_method("x2", "nope", "x", learning_rate=(1e-4, 1e-3), build=lambda p, f: None)
    with pytest.raises(ValueError, match="learning_rate"):
        register_method("x3", "lora", "x", learning_rate=(1e-2, 1e-4), build=lambda p, f: None)
    assert not {"x1", "x2", "x3"} & set(METHODS)


def test_hyperparameter_override_keeps_types_and_bounds():
    rank = CATALOGUE["rank"]
    assert rank.overridden(TuneSearchOverride(low=8)).low == 8
    assert rank.overridden(TuneSearchOverride(high=2)) == Hyperparameter("rank", "int", 2, 2, log=True,
                                                                          help=rank.help, limits=rank.limits)
    assert micro_batches(32, 8) == (8, 4) and micro_batches(12, 8) == (6, 2) and micro_batches(1, 8) == (1, 1)


BAD_TUNE = [
    ("search: {rnak: {low: 1}}", "tune.search.rnak: unknown hyperparameter 'rnak'"),
    ("search: {rank: {low: 8, high: 4}}", "tune.search.rank: low (8) is above high (4)"),
    ("search: {rank: {low: 2.5}}", "tune.search.rank: low must be a whole number"),
    ("search: {learning_rate: {low: 0}}", "tune.search.learning_rate: low must be positive"),
    ("search: {target_modules: {choices: [mlp]}}", "tune.search.target_modules: unknown choice 'mlp'"),
    ("search: {target_modules: {low: 1}}", "tune.search.target_modules: takes `choices`, not low/high"),
    ("search: {lora.foo: {low: 1}}", "tune.search.lora.foo: method 'lora' has no hyperparameter 'foo'"),
    ("search: {lroa.rank: {low: 1}}", "tune.search.lroa.rank: unknown method 'lroa'"),
    ("search: {rank: {}}", "tune.search.rank: give `low`, `high` or `choices`"),
    ("search: {rank: {low: 1, choices: [2]}}", "tune.search.rank: give either `choices` or `low`/`high`"),
    ("search: {rank: {lo: 1}}", "tune.search.rank.lo: unknown key 'lo'"),
    ("methods: [lora, lroa]", "tune.methods.1: unknown method 'lroa'"),
    ("methods: []", "tune.methods: give at least one method"),
    ("pruner: asha", "tune.pruner:"),
    ("n_trials: 0", "tune.n_trials:"),
    ("eval_every: 100", "tune: eval_every (100) is larger than max_steps (60)"),
    ("storage: study.db", "tune.storage: expected an Optuna storage URL"),
    ("trails: 3", "tune.trails: unknown key 'trails'"),
    ("search: {rank: {choices: [0, -8]}}", "tune.search.rank: a choice must be positive"),
    ("search: {dropout: {high: 1.5}}", "tune.search.dropout: high must be at most 0.9"),
    ("search: {warmup_ratio: {choices: [2]}}", "tune.search.warmup_ratio: a choice must be at most 1"),
    ("search: {batch_size: {low: -1}}", "tune.search.batch_size: low must be positive"),
    ("storage: foo://bar", "tune.storage: unknown database kind 'foo'"),
    ("max_steps: .inf", "tune.max_steps:"),
    ("budget_usd: .nan", "tune.budget_usd:"),
]


@pytest.mark.parametrize("snippet,message", BAD_TUNE, ids=[m.split(":")[1].strip() + "-" + str(i)
                                                            for i, (_, m) in enumerate(BAD_TUNE)])
def test_bad_tune_section_gives_one_line_error_with_key_path(tmp_path, snippet, message):
    (tmp_path / "d.jsonl").write_text("".join(f'{{"question": "q{i}", "answer": "a"}}\n' for i in range(12)))
    key, value = snippet.split(":", 1)
    (tmp_path / "task.yaml").write_text(textwrap.dedent(f"""\
        name: t
        data: {{file: d.jsonl, eval_fraction: 0.5}}
        tune:
          {key}: {value.strip()}
        """))
    with pytest.raises(AdviseError) as err:
        load_task(tmp_path / "task.yaml")
    line = err.value.one_line()
    assert "\n" not in line
    assert line.startswith(f"{tmp_path / 'task.yaml'}: {message}"), line


def test_good_tune_section_loads(tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(f'{{"question": "q{i}", "answer": "a"}}\n' for i in range(12)))
    (tmp_path / "task.yaml").write_text(textwrap.dedent("""\
        name: t
        data: {file: d.jsonl, eval_fraction: 0.5}
        tune:
          methods: [lora, ia3, prompt_tuning]
          pruner: median
          search:
            learning_rate: {low: 1.0e-5, high: 1.0e-3}
            lora.rank: {choices: [8, 16]}
            target_modules: {choices: [all-linear]}
        """))
    tune = load_task(tmp_path / "task.yaml").tune
    assert tune.methods == ["lora", "ia3", "prompt_tuning"]
    assert tune.search["lora.rank"].choices == [8, 16]
    assert isinstance(tune.search["lora.rank"].choices[0], int)
