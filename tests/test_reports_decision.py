"""The report's new sections, rendered from results as `advise run` writes them: the pilots'
learning curves, stability over seeds, preference data, objectives in the study and the
knowledge-injection comparison; both renderers show what the view model holds."""
from __future__ import annotations

import io

from rich.console import Console

from advisor.stability import summarize_seeds
from conftest_reports import make_results
from foundation.results import SeedRun
from reports import build_report, print_summary
from reports.html import render_html


def _results(tmp_path, **data):
    results = make_results(tmp_path)
    ft = results.candidate("finetune")
    ft.details["learning_curve"] = {"steps": [20, 40, 60, 90], "validation": [0.41, 0.50, 0.55, 0.62],
                                    "still_improving": True, "extended_steps": 30,
                                    "stopped": "still rising after 1 extra round(s) (baselines.finetune.max_extensions)"}
    results.candidate("rag").details["format_share"] = 0.7
    ft.details["format_share"] = 1.0
    runs = [SeedRun(seed=s, winner=w, recommendation=w, means={c.name: c.quality.mean for c in results.candidates})
            for s, w in ((7, "finetune"), (8, "finetune"), (9, "rag"))]
    runs[2].means["finetune"] = 0.5
    results.stability = summarize_seeds(runs, {c.name: c.baseline for c in results.candidates}, 0.02)
    trials = results.study.trials
    trials[0].objective, trials[1].objective = "cpt+sft", "sft"
    trials[3].objective = "rlhf"
    trials[3].training = {"reward_model": {"accuracy": 0.83, "folder": str(tmp_path / "adapters" / "reward-model"),
                                           "steps": 12, "held_out_pairs": 6}}
    results.study.excluded_objectives = {"dpo": "needs paired preference data (prompt, chosen, rejected)"}
    results.data.update(data)
    return results


def _terminal(results, run_dir) -> str:
    out = io.StringIO()
    print_summary(results, run_dir, Console(file=out, width=140, color_system=None))
    return out.getvalue()


def test_curves_stability_objectives_in_the_view(tmp_path):
    results = _results(tmp_path)
    report = build_report(results, tmp_path)
    curve = next(c for c in report.curves if c.name == "finetune")
    assert curve.points[-1] == (90, 0.62) and curve.still_improving and curve.extended_steps == 30
    assert report.stability is not None and not report.stability.stable
    assert report.stability.winners == ("finetune", "finetune", "rag")
    assert {r.name: r.wins for r in report.stability.rows}["finetune"] == 2
    assert "Not stable across 3 seeds: finetune 2 of 3, rag 1 of 3" in report.stability.summary
    rows = {r.name: r for r in report.rows}
    assert rows["rag"].format_share == 0.7
    assert report.study.excluded_objectives == (("dpo", "needs paired preference data (prompt, chosen, rejected)"),)
    methods = {t.number: t.method for t in report.study.trials}
    assert methods[0] == "lora + cpt+sft" and methods[1] == "dora"
    assert report.study.knowledge.startswith("Knowledge injection: continued pre-training")
    assert "RAG" not in report.study.knowledge  # the RAG candidate here retrieved examples, not the corpus
    assert ("Reward model (rlhf): pairwise accuracy 83.0% on 6 held-out validation pairs after 12 steps, saved in "
            "adapters/reward-model/") in report.study.knowledge


def test_both_renderers_show_the_new_sections(tmp_path):
    results = _results(tmp_path)
    text = _terminal(results, tmp_path)
    assert "Learning curve of finetune (validation quality @ step): 0.41@20, 0.50@40, 0.55@60, 0.62@90" in text
    assert "Stability over 3 seeds" in text and "Answers in the expected form: rag 70%, finetune 100%" in text
    assert "objective dpo not searched: needs paired preference data" in text
    html = render_html(build_report(results, tmp_path))
    assert 'id="learning-curves"' in html and 'id="stability"' in html and "Learning curve" in html
    assert "70% of its answers in the expected form" in html and "Knowledge injection" in html
    assert "Training objectives not searched" in html


def test_preference_data_is_labelled_as_such(tmp_path):
    results = _results(tmp_path, kind="preference")
    report = build_report(results, tmp_path)
    assert report.metric_label == "preference accuracy" and report.data_kind == "preference"
    assert "Quality on preference data" in _terminal(results, tmp_path)
    assert "This is preference data" in render_html(report)
