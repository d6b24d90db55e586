import pytest

from advisor.metrics import METRICS, normalize, score, score_all

CASES = {  # metric: (good prediction, bad prediction, reference, options)
    "exact_match": ("The Paris!", "Rome", "paris", {}),
    "token_f1": ("paris", "rome", "Paris", {}),
    "rouge_l": ("the cat sat on the mat", "dogs run", "the cat sat on the mat", {}),
    "accuracy": ("Queue: OPS-KILN", "BILLING", "OPS-KILN", {"labels": ["OPS-KILN", "BILLING"]}),
    "contains": ("The code is AX-220.", "The code is AX-22.", "AX-220", {}),
    "json": ('{"city": "Paris", "n": 2}', '{"city": "Rome", "n": 3}', '{"city": "paris", "n": 2}', {}),
    "embedding_similarity": ("A cat sits on the mat.", "Quarterly revenue rose sharply.", "A cat is sitting on a mat.", {}),
}


def test_every_registered_metric_has_a_case():
    assert set(CASES) == set(METRICS)


@pytest.fixture(scope="module")
def embedder():
    from advisor.models import load_embedder, resolve_embedder

    return load_embedder(resolve_embedder("default"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_metric_separates_good_from_bad(name, embedder):
    good, bad, ref, opts = CASES[name]
    kw = {"embedder": embedder} if METRICS[name].needs_embedder else opts
    s_good, s_bad = score_all(name, [good, bad], [ref, ref], **kw)
    assert 0.0 <= s_bad < s_good <= 1.0
    if name not in ("embedding_similarity", "rouge_l"):
        assert s_good == 1.0 and s_bad == 0.0


def test_normalize_and_partial_json():
    assert normalize("  The  Answer, is: 42. ") == "answer is 42"
    assert score("json", '```json\n{"a": 1, "b": 2}\n```', '{"a": 1, "b": 3}') == 0.5
    assert score("json", "not json", '{"a": 1}') == 0.0
    assert score("accuracy", "billing or ops", "OPS", labels=["BILLING", "OPS"]) == 0.0  # first label named wins
