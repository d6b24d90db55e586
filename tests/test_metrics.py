"""Every registered metric through the one API, ``score(task, predictions, references, embedder)``."""
import pytest

from foundation.config import MetricConfig
from foundation.metrics import METRICS, check_reference, normalize, register_metric, score

CASES = {  # metric: (good prediction, bad prediction, reference, options, a reference it can never match)
    "exact_match": ("The Paris!", "Rome", "paris", {}, "The."),
    "token_f1": ("paris", "rome", "Paris", {}, "a an"),
    "rouge_l": ("the cat sat on the mat", "dogs run", "the cat sat on the mat", {}, "?!"),
    "accuracy": ("Queue: OPS-KILN", "BILLING", "OPS-KILN", {"labels": ["OPS-KILN", "BILLING"]}, "SALES"),
    "contains": ("The code is AX-220.", "The code is AX-22.", "AX-220", {}, "the"),
    "json": ('{"city": "Paris", "n": 2}', '{"city": "Rome", "n": 3}', '{"city": "paris", "n": 2}', {}, "Paris"),
    "embedding_similarity": ("A cat sits on the mat.", "Quarterly revenue rose sharply.", "A cat is sitting on a mat.",
                             {}, None),
}


def test_every_registered_metric_has_a_case_and_a_label():
    # A metric that grades whole records with the task's models (llm_judge) is tested in test_endpoints.py.
    assert set(CASES) == {name for name, m in METRICS.items() if m.grade_records is None}
    for m in METRICS.values():
        assert m.label and m.description and set(m.required) <= set(m.options)


@pytest.fixture(scope="module")
def embedder():
    from foundation.models import load_embedder, resolve_embedder

    return load_embedder(resolve_embedder("default"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_metric_separates_good_from_bad(name, embedder):
    good, bad, ref, opts, _ = CASES[name]
    config = MetricConfig(name=name, **opts)
    s_good, s_bad = score(config, [good, bad], [ref, ref], embedder=embedder if METRICS[name].needs_embedder else None)
    assert 0.0 <= s_bad < s_good <= 1.0
    if name not in ("embedding_similarity", "rouge_l"):
        assert s_good == 1.0 and s_bad == 0.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_metric_refuses_a_reference_it_can_never_match(name):
    good, _, ref, opts, impossible = CASES[name]
    config = MetricConfig(name=name, **opts)
    assert check_reference(config, ref) is None
    if impossible is None:
        assert METRICS[name].check_reference is None
    else:
        assert check_reference(config, impossible)


def test_options_are_checked_against_the_metric():
    with pytest.raises(ValueError, match="needs `labels`"):
        MetricConfig(name="accuracy")
    with pytest.raises(ValueError, match="only read by accuracy"):
        MetricConfig(name="exact_match", labels=["a"])
    with pytest.raises(ValueError, match="same as 'billing'"):
        MetricConfig(name="accuracy", labels=["billing", "Billing."])
    with pytest.raises(ValueError, match="empty"):
        MetricConfig(name="accuracy", labels=["ok", "?"])


def test_single_letter_labels_are_not_taken_for_articles():
    config = MetricConfig(name="accuracy", labels=["A", "B", "C", "D"])
    assert score(config, ["A", "B.", "The answer is C", ""], ["A", "B", "C", "A"]) == [1.0, 1.0, 1.0, 0.0]


def test_register_metric_checks_its_entry():
    with pytest.raises(ValueError, match="already registered"):
        register_metric("exact_match", label="x", description="x")(lambda p, r: 0.0)
    with pytest.raises(ValueError, match="unknown options"):
        register_metric("new_metric", label="x", description="x", options=("colour",))(lambda p, r: 0.0)
    assert "new_metric" not in METRICS


def test_normalize_and_partial_json():
    assert normalize("  The  Answer, is: 42. ") == "answer is 42"
    assert score(MetricConfig(name="json"), ['```json\n{"a": 1, "b": 2}\n```', "not json"],
                 ['{"a": 1, "b": 3}', '{"a": 1}']) == [0.5, 0.0]
    labels = MetricConfig(name="accuracy", labels=["BILLING", "OPS"])
    assert score(labels, ["billing or ops"], ["OPS"]) == [0.0]  # the first label named wins
