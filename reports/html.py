"""The HTML report: one self-contained file, opens offline, every text escaped.

The page is a Jinja2 template with autoescape on (a model answer ``<script>`` shows as text),
inline CSS, and charts as inline SVG (``reports.charts``): no scripts, fonts or images are
fetched from anywhere.

>>> from foundation.results import load_results                        # doctest: +SKIP
>>> write_html(load_results("runs/demo"), "runs/demo")              # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""
from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from foundation.results import Results
from reports import charts
from reports import format as f
from reports.build import build_report
from reports.view import Report

TEMPLATES = Path(__file__).with_name("templates")


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(q=f.fmt_quality, money=f.fmt_money, ms=f.fmt_ms, secs=f.fmt_seconds, mem=f.fmt_memory,
                       ci=f.fmt_ci)
    return env


def render_html(report: Report) -> str:
    """The report page as a string."""
    study = report.study
    horizon = f"{report.horizon_months:g} months at {report.queries_per_month:,} queries/month"
    figs = {
        "quality_cost": charts.quality_cost_chart(report.quality_cost, x_label=f"Total cost over {horizon}",
                                                  ci=report.ci_label),
    }
    figs["curves"] = {c.name: charts.curve_chart(c.points) for c in report.curves}
    if study is not None:
        figs.update(
            pareto_cost=charts.pareto_chart(study.trials, by="cost"),
            pareto_latency=charts.pareto_chart(study.trials, by="latency"),
            history=charts.history_chart(study.history),
            importance=charts.bar_chart(study.importance, title="Hyperparameter importance"),
            methods=charts.methods_chart(study.methods),
        )
    return _environment().get_template("report.html.j2").render(r=report, study=study, charts=figs)


def write_html(results: Results, run_dir: str | Path) -> Path:
    """Build the report and write ``run_dir/report.html``; returns its path."""
    run_dir = Path(run_dir)
    html = render_html(build_report(results, run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "report.html"
    tmp = path.with_suffix(".html.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:  # the user's path in the message, never the temporary file's
        if tmp.is_file():
            tmp.unlink()
        raise OSError(e.errno, e.strerror, str(path)) from None
    return path
