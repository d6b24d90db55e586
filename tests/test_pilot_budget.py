"""The pilot's learning curve follows signal, not noise, and a pilot its time budget stopped says
so everywhere the verdict is shown. Training is real (the tiny random model); only the
per-example validation scores the extension reacts to are scripted."""
from __future__ import annotations

import json

from conftest import write_task
from test_cli import advise
from test_decision_quality import _trained
from training.curve import NOISE_P, LearningCurve, extend_while_rising, rising, sign_test_p

N = 17  # the demo's validation split


def _flipped(k: int) -> list[float]:
    """Per-example scores of the validation split with ``k`` examples right."""
    return [1.0] * k + [0.0] * (N - k)


def _scripted(points):
    it = iter(points)
    return lambda model: next(it)


def test_a_rise_of_one_example_is_noise_and_does_not_extend(tmp_path):
    trained, kit = _trained(write_task(tmp_path / "t"), 4)
    scores = [_flipped(0), _flipped(0), _flipped(1)]  # 0.00 → 0.00 → 0.06: one of 17 flipped
    curve = LearningCurve(_scripted([]), points=[(1, 0.0), (3, 0.0), (4, 1 / N)], scores=scores)
    assert rising(curve.points, min_gain=0.02)  # the means alone rose by more than min_gain
    result = extend_while_rising(trained, kit, curve, min_gain=0.02, max_extensions=2, time_budget_s=600)
    assert result.steps == 4 and curve.extended_steps == 0 and "within noise" in curve.stopped
    summary = curve.to_dict(0.02)
    assert summary["still_improving"] is False
    assert summary["last_third"] == {"better": 1, "worse": 0, "p": 0.5}


def test_a_clear_rise_extends_and_a_rise_that_flips_back_and_forth_does_not():
    # Five examples better and none worse is a rise; five better and four worse is noise.
    before = _flipped(4)
    clear = LearningCurve(_scripted([]), points=[(1, 0.0), (3, 4 / N), (4, 9 / N)],
                          scores=[_flipped(0), before, _flipped(9)])
    assert clear.rising(0.02) and sign_test_p(5, 0) <= NOISE_P
    churn = [0.0] * 4 + [1.0] * 5 + [0.0] * (N - 9)  # the four right ones wrong, five others right
    noisy = LearningCurve(_scripted([]), points=[(1, 0.0), (3, 4 / N), (4, 5 / N)],
                          scores=[_flipped(0), before, churn])
    assert sum(churn) == 5 and not noisy.rising(0.02)


def test_a_clear_rise_trains_on(tmp_path):
    trained, kit = _trained(write_task(tmp_path / "t"), 4)
    later = [_flipped(9), _flipped(9), _flipped(9), _flipped(9)]  # flat after the first extra round
    curve = LearningCurve(_scripted(later), points=[(1, 0.0), (3, 4 / N), (4, 9 / N)],
                          scores=[_flipped(0), _flipped(4), _flipped(9)])
    result = extend_while_rising(trained, kit, curve, min_gain=0.02, max_extensions=2, time_budget_s=600)
    assert curve.extended_steps == 2 and result.steps == 6 and curve.stopped == "the curve flattened"


def test_a_pilot_stopped_by_its_time_budget_says_so_in_results_terminal_and_report(tmp_path):
    path = write_task(tmp_path / "t", corpus=False)  # the prompts and the pilot: RAG and FT + RAG are left out
    path.write_text(path.read_text().replace("finetune: {max_steps: 3,", "finetune: {max_steps: 6, time_budget_s: 0.001,")
                    .replace("rag: {chunk_tokens: 32, chunk_overlap: 8, top_k: 2}", "rag: {enabled: false}"))
    r = advise("run", path, "--no-tune")
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "t/runs/tiny-task"
    results = json.loads((run_dir / "results.json").read_text())
    pilot = next(c for c in results["candidates"] if c["name"] == "finetune")
    assert pilot["details"]["steps"] == 1 and pilot["details"]["planned_steps"] == 6
    reason = "cut short after 1 of 6 planned steps (time budget of 0.001 s reached)"
    assert pilot["details"]["cut_short"] == reason
    assert pilot["details"]["learning_curve"]["stopped"] == reason
    caution = next(c for c in results["verdict"]["cautions"] if c.startswith("finetune's fine-tune was cut short"))
    assert "1 of 6 planned steps" in caution and "17% of the training planned" in caution
    terminal = " ".join(r.stdout.split())  # rich wraps long lines
    assert "CUT SHORT after 1 of 6 planned steps" in terminal and "finetune's fine-tune was cut short" in terminal
    html = (run_dir / "report.html").read_text()
    assert reason in html and "finetune&#39;s fine-tune was cut short after 1 of 6 planned steps" in html
