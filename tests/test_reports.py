"""Reports: the built report, the terminal summary (narrow, NO_COLOR, quiet), the HTML file, --json."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from foundation.results import load_results
from decision.verdict import decide
from reports import build_report, print_summary, report_json, write_html

try:
    from conftest_reports import HTML_INPUT, XSS, make_results, make_task
except ImportError:  # tests/ made a package
    from tests.conftest_reports import HTML_INPUT, XSS, make_results, make_task

COLOR_SGR = re.compile(r"\x1b\[([0-9;]*)m")


@pytest.fixture
def run(tmp_path):
    return make_results(tmp_path), tmp_path


def _terminal(results, run_dir, width, *, quiet=False, force_terminal=True):
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=force_terminal,
                      color_system="truecolor" if force_terminal else None)
    print_summary(results, run_dir, console, quiet=quiet)
    return buf.getvalue()


def _colour_codes(text: str) -> list[str]:
    """SGR parameters that set a colour (30–38, 40–48, 90–107), not bold or dim."""
    out = []
    for params in COLOR_SGR.findall(text):
        for p in params.split(";"):
            if p.isdigit() and (30 <= int(p) <= 48 or 90 <= int(p) <= 107):
                out.append(params)
                break
    return out


# ---------------------------------------------------------------- the built report

def test_report_marks_the_winner_and_why_others_lost(run):
    results, run_dir = run
    report = build_report(results, run_dir)
    assert report.winner == "finetune" == results.verdict.winner
    rows = {r.name: r for r in report.rows}
    assert rows["finetune"].winner and rows["finetune"].status == "recommended"
    assert [r.name for r in report.rows if r.winner] == ["finetune"]
    assert rows["rag"].status == "significantly worse"
    assert rows["finetune"].monthly_cost_usd == pytest.approx(0.021 * 250_000 / 1000)
    assert 3 <= len(report.figures) <= 4


def test_recommendation_says_what_to_ship_and_what_it_costs(run):
    results, run_dir = run
    text = build_report(results, run_dir).recommendation
    assert text.startswith("Fine-tune the model")
    assert "250,000 queries a month" in text and "$5.25 a month" in text
    assert "87.5%" in text and "trial 8" in text


def test_recommendation_when_rag_wins_names_the_fine_tuning_cost(tmp_path):
    results = make_results(tmp_path, study=False)
    ft = results.candidate("finetune")
    ft.scores = list(results.candidate("rag").scores)  # fine-tuning brings nothing: RAG wins on cost
    ft.quality = results.candidate("rag").quality.model_copy()
    ft.cost_per_1k_usd = 0.08  # and serving it costs more
    results.verdict = decide(results.candidates, make_task())
    report = build_report(results, tmp_path)
    assert report.winner != "finetune"
    assert "Fine-tuning would cost $0.34 up front" in report.recommendation


def test_examples_are_where_candidates_differ(run):
    results, run_dir = run
    report = build_report(results, run_dir)
    assert 1 <= len(report.examples) <= 6
    for e in report.examples:
        assert len({a.score for a in e.answers}) > 1
        assert [a.candidate for a in e.answers] == [c.name for c in results.candidates]
        assert e.reference
    by_index = {e.index: e for e in report.examples}
    assert by_index[0].answers[0].prediction == XSS
    assert by_index[1].input == HTML_INPUT
    assert any("worse" in e.why for e in report.examples), "shows where the winner is worse, too"


def test_study_tables(run):
    results, run_dir = run
    study = build_report(results, run_dir).study
    assert study.counts == {"total": 10, "complete": 6, "pruned": 3, "failed": 1}
    assert study.best.number == 8 and study.best.best
    assert {t.number for t in study.pareto} == {t.number for t in results.study.trials if t.pareto}
    methods = {m.method: m for m in study.methods}
    assert methods["bitfit"].excluded and "bias" in methods["bitfit"].reason
    assert methods["full"].failed == 1 and "out of memory" in methods["full"].reason
    assert methods["ia3"].pruned == 1
    assert [h.number for h in study.history] == list(range(10))
    assert study.importance[0] == ("learning_rate", 0.46)


def test_examples_when_every_option_answers_alike(run):
    results, run_dir = run
    rows = [json.loads(line) for line in (run_dir / results.candidates[-1].predictions_file).read_text().splitlines()]
    for c in results.candidates:
        (run_dir / c.predictions_file).write_text("".join(json.dumps(r) + "\n" for r in rows))
        c.scores = [r["score"] for r in rows]
    report = build_report(results, run_dir)
    assert len(report.examples) == 3 and not report.examples_differ
    assert "same answer" in report.examples_note


def test_missing_predictions_and_no_verdict_still_build(tmp_path):
    results = make_results(tmp_path, study=False, verdict=False, interrupted=True)
    (tmp_path / results.candidates[0].predictions_file).unlink()
    report = build_report(results, tmp_path)
    assert report.winner is None and "stopped before a verdict" in report.recommendation
    assert "prompt-zero-shot" in report.examples_note
    assert report.examples, "the other three candidates still give examples"
    assert any("interrupted" in n for n in report.notices)


def test_study_on_its_own(tmp_path):
    """`advise tune` without baselines: the study is the whole result."""
    results = make_results(tmp_path, verdict=False)
    results.candidates = []
    report = build_report(results, tmp_path)
    assert report.headline.startswith("Fine-tuning search: trial 8")
    assert report.recommendation.startswith("Use trial 8: lora with rank 8")
    out = " ".join(_terminal(results, tmp_path, 60, force_terminal=False).split())
    assert "Use trial 8" in out and "Best trials" in out
    html = write_html(results, tmp_path).read_text(encoding="utf-8")
    assert "Use trial 8" in html and 'id="study"' in html


# ---------------------------------------------------------------- terminal

def test_terminal_narrow_no_color(run, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    results, run_dir = run
    out = _terminal(results, run_dir, 60)
    assert _colour_codes(out) == []
    plain = COLOR_SGR.sub("", out)
    assert max(cell_len(line) for line in plain.splitlines()) <= 60
    assert "★ finetune" in plain and "recommended" in plain
    for number in ("87.5%", "77.5–97.5%", "$0.021", "$0.34", "175 ms", "250 ms", "1.9 GB", "$5.25"):
        assert number in plain, number
    assert "Best trials" in plain and "Pareto front" in plain
    assert "bitfit excluded: SmolLM2 has no bias terms" in plain


def test_terminal_narrow_never_cuts_a_name_or_number(run):
    results, run_dir = run
    long = results.candidates[1]
    long.name = "prompt-few-shot-with-a-long-descriptive-name"
    long.quality.ci_low, long.quality.ci_high = 0.0, 1.0
    results.verdict = decide(results.candidates, make_task())
    out = _terminal(results, run_dir, 60, force_terminal=False)
    assert "…" not in out
    squeezed = "".join(out.split())
    assert long.name in squeezed and "0.0–100.0%" in squeezed


def test_terminal_wide_shows_every_column(run):
    results, run_dir = run
    out = _terminal(results, run_dir, 140, force_terminal=False)
    for header in ("Quality", "95% CI", "Latency p50 / p95", "Cost / 1,000 queries", "One-off cost", "Memory"):
        assert header in out
    row = next(line for line in out.splitlines() if "★ finetune" in line)
    assert "87.5%" in row and "175 ms / 250 ms" in row and "recommended" in row
    assert "Settings" in out and "rank 8 · alpha 16 · lr 8e-04" in out


def test_terminal_colour_is_used_when_allowed(run, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    results, run_dir = run
    assert _colour_codes(_terminal(results, run_dir, 100))


def test_terminal_quiet_is_one_line(run):
    results, run_dir = run
    out = _terminal(results, run_dir, 200, quiet=True, force_terminal=False)
    assert out.strip() == results.verdict.headline


def test_terminal_interrupted_study_and_no_verdict(tmp_path):
    results = make_results(tmp_path / "a", interrupted=True)
    out = " ".join(_terminal(results, tmp_path / "a", 60, force_terminal=False).split())
    assert "This run is interrupted" in out and "1 still running" in out and "--resume" in out
    results = make_results(tmp_path / "b", study=False, verdict=False)
    out = _terminal(results, tmp_path / "b", 60, force_terminal=False)
    assert "No verdict" in out and "87.5%" in out


# ---------------------------------------------------------------- HTML

EXTERNAL = re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def _assert_self_contained(html: str) -> None:
    assert not EXTERNAL.search(html)
    assert "<link" not in html.lower() and "@import" not in html and "url(" not in html
    assert "<script" not in html.lower(), "the report needs no JavaScript at all"


def test_html_is_one_self_contained_file(run):
    results, run_dir = run
    path = write_html(results, run_dir)
    assert path == run_dir / "report.html"
    assert not list(run_dir.glob("*.tmp"))
    html = path.read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    for section in ("recommendation", "key-figures", "comparison", "examples", "study", "appendix"):
        assert f'id="{section}"' in html, section
    assert html.count('<svg class="chart') == 6  # quality/cost, 2 Pareto, history, importance, methods


def test_html_escapes_user_and_model_text(run):
    results, run_dir = run
    html = write_html(results, run_dir).read_text(encoding="utf-8")
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>two</b>" not in html and "&lt;b&gt;two&lt;/b&gt;" in html
    assert "&lt;allocating 1.9 GiB&gt;" in html  # a trial note, in the table and in the chart tooltips


def test_html_content(run):
    results, run_dir = run
    html = write_html(results, run_dir).read_text(encoding="utf-8")
    assert "★ recommended" in html and "$5.25 a month" in html
    assert "Recommended configuration: trial 8" in html
    for word in ("excluded", "SmolLM2 has no bias terms to train", "stopped early", "Pareto front",
                 "Optimisation history", "Hyperparameter importance", "question_answer", "train/eval duplicates",
                 "2.13.0", "task seed", "finetune (train)", "Reference:"):
        assert word in html, word


def test_html_rerenders_from_results_json(run):
    _, run_dir = run
    first = write_html(load_results(run_dir), run_dir).read_text(encoding="utf-8")
    assert write_html(load_results(run_dir), run_dir).read_text(encoding="utf-8") == first


@pytest.mark.parametrize("variant", [
    {"interrupted": True}, {"study": False}, {"study": False, "verdict": False, "interrupted": True}])
def test_html_renders_every_kind_of_run(tmp_path, variant):
    results = make_results(tmp_path, **variant)
    html = write_html(results, tmp_path).read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert 'id="recommendation"' in html
    assert ('id="study"' in html) == variant.get("study", True)
    if variant.get("interrupted"):
        assert "interrupted" in html


def test_html_without_any_predictions(run):
    results, run_dir = run
    for c in results.candidates:
        (run_dir / c.predictions_file).unlink()
    html = write_html(results, run_dir).read_text(encoding="utf-8")
    assert "Predictions not found" in html


def test_docs_example_is_self_contained():
    path = Path(__file__).resolve().parents[1] / "docs" / "example-report.html"
    if not path.exists():
        pytest.skip("docs/example-report.html not generated yet")
    _assert_self_contained(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- --json

def test_report_json(run):
    results, run_dir = run
    data = json.loads(report_json(results))
    assert data["verdict"]["winner"] == "finetune" and data["status"] == "complete"
    assert [c["name"] for c in data["candidates"]] == [c.name for c in results.candidates]
    assert data["candidates"][-1]["winner"] is True
    assert data["study"]["best"]["number"] == 8 and "examples" not in data
    with_examples = json.loads(report_json(results, run_dir))
    assert with_examples["examples"][0]["answers"][0]["prediction"] == XSS
