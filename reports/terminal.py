"""The terminal summary: the verdict in a panel, the comparison table, the study's best trials.

Marks never depend on colour (the winner has a star and the word "recommended"), so the
output reads the same with ``NO_COLOR`` and in a 60-column terminal, where the tables switch
to stacked cells.

>>> from rich.console import Console                                    # doctest: +SKIP
>>> print_summary(load_results("runs/demo"), "runs/demo", Console())    # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from foundation.results import Results
from reports.build import build_report
from reports.format import fmt_ci, fmt_memory, fmt_money, fmt_ms, fmt_quality, fmt_seconds
from reports.view import Report, StudyView, TrialRow

WIDE = 100  # below this many columns, tables stack their cells


def print_summary(results: Results, run_dir: str | Path, console: Console, quiet: bool = False) -> Report:
    """Print the summary of a run; with ``quiet`` only the one-line verdict. Returns the report."""
    report = build_report(results, run_dir)
    if quiet:
        console.print(Text(report.headline), soft_wrap=True)
        return report
    star = _star(console)
    for notice in report.notices:
        console.print(Text(f"! {notice}", style="bold yellow"))
    console.print(_verdict_panel(report))
    if report.rows:
        console.print(_comparison_table(report, console.width < WIDE, star))
    for line in _quality_notes(report):
        console.print(Text(line, style="dim"))
    if report.stability is not None:
        console.print(_stability_table(report.stability, star))
    if report.study is not None:
        _print_study(report.study, console, star, report.ci_label)
    return report


def _star(console: Console) -> str:
    return "★" if (console.encoding or "").lower().startswith("utf") else "*"


def _verdict_panel(report: Report) -> Panel:
    parts: list = [Text(report.headline, style="bold")]
    if report.study is not None and not report.rows:  # `advise tune` alone: say what the search found
        parts.append(Text(report.recommendation))
    if report.figures:
        figures = Text()
        for f in report.figures:
            figures.append(f"\n{f.label}: ", style="dim")
            figures.append(f.value, style="bold")
            if f.detail:
                figures.append(f" ({f.detail})")
        parts.append(figures)
    if report.reasons or report.cautions:
        parts.append(Text("\nWhy:", style="bold"))
        bullets = Table.grid(padding=(0, 1))  # a grid gives wrapped lines a hanging indent
        bullets.add_column(no_wrap=True)
        bullets.add_column()
        for r in report.reasons:
            bullets.add_row("•", Text(r))
        for c in report.cautions:
            bullets.add_row(Text("!", style="yellow"), Text(f"Caution: {c}", style="yellow"))
        parts.append(bullets)
    style = "green" if report.winner or (report.study and report.study.best) else "yellow"
    if report.winner:
        title = f"Verdict: {report.task_name}"
    elif report.study is not None and not report.rows:
        title = f"Fine-tuning search: {report.task_name}"
    else:
        title = f"No verdict: {report.task_name}"
    return Panel(Group(*parts), title=title, title_align="left", border_style=style, padding=(0, 1))


def _comparison_table(report: Report, narrow: bool, star: str) -> Table:
    table = Table(title=f"Candidates ({report.metric_label}, {report.rows[0].n} eval examples)",
                  box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, show_edge=False, expand=False)
    longest = max(len(r.name) for r in report.rows) + 2  # names stay on one line when they can
    table.add_column("Option", overflow="fold", min_width=min(longest, 20))
    if narrow:
        for name in (f"Quality\n{report.ci_label}", "Latency\np50/p95", "Cost/1k\none-off", "Mem"):
            table.add_column(name, justify="right", overflow="fold")  # fold, never cut a number short
    else:
        for name in ("Quality", report.ci_label, "Latency p50 / p95", "Cost / 1,000 queries", "One-off cost", "Memory"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("Verdict")
    for r in report.rows:
        name = Text(f"{star} {r.name}" if r.winner else r.name, style="bold green" if r.winner else "")
        if narrow:
            name.append(f"\n{'recommended' if r.winner else r.status}", style="green" if r.winner else "dim")
            table.add_row(name, f"{fmt_quality(r.quality)}\n{fmt_ci(r.ci_low, r.ci_high)}",
                          f"{fmt_ms(r.latency_p50_ms)}\n{fmt_ms(r.latency_p95_ms)}",
                          f"{fmt_money(r.cost_per_1k_usd)}\n{fmt_money(r.one_off_cost_usd)}",
                          fmt_memory(r.peak_memory_mb))
        else:
            table.add_row(name, fmt_quality(r.quality), fmt_ci(r.ci_low, r.ci_high),
                          f"{fmt_ms(r.latency_p50_ms)} / {fmt_ms(r.latency_p95_ms)}", fmt_money(r.cost_per_1k_usd),
                          fmt_money(r.one_off_cost_usd), fmt_memory(r.peak_memory_mb),
                          Text("recommended" if r.winner else r.status, style="bold green" if r.winner else ""))
    table.caption = (f"Monthly cost at {report.queries_per_month:,} queries: "
                     + ", ".join(f"{r.name} {fmt_money(r.monthly_cost_usd)}" for r in report.rows))
    table.caption_justify = "left"
    return table


def _quality_notes(report: Report) -> list[str]:
    """What the table cannot show: how preference data is scored, the pilots' learning curves,
    the shares of well-formed answers, the second figure on preference data."""
    out = []
    if report.data_kind != "sft":
        out.append("Quality on preference data: the share of held-out pairs where the option's own likelihood "
                   "prefers the chosen answer (unpaired: ranks desirable answers above its typical one).")
    for c in report.curves:
        points = ", ".join(f"{v:.2f}@{s}" for s, v in c.points)
        state = "still rising" if c.still_improving else "flat"
        more = f", {c.extended_steps} extra steps" if c.extended_steps else ""
        why = c.stopped if not c.cut_short else "CUT SHORT" + c.cut_short.removeprefix("cut short")
        out.append(f"Learning curve of {c.name} (validation quality @ step): {points} — {state}{more}; {why}")
    shares = [f"{r.name} {r.format_share:.0%}" for r in report.rows if r.format_share is not None]
    if shares:
        out.append("Answers in the expected form: " + ", ".join(shares))
    out += [f"{r.name}: {r.second_metric}" for r in report.rows if r.second_metric]
    out += [f"{r.name}: {r.paid_by_measurement}" for r in report.rows if r.paid_by_measurement]
    return out


def _stability_table(st, star: str) -> Table:
    table = Table(title=f"Stability over {len(st.seeds)} seeds ({', '.join(map(str, st.seeds))})",
                  box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, show_edge=False)
    for name, justify in (("Option", "left"), ("Wins", "right"), ("Quality min", "right"), ("mean", "right"),
                          ("max", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for r in st.rows:
        table.add_row(r.name, f"{r.wins} of {len(st.seeds)}", fmt_quality(r.low), fmt_quality(r.mean),
                      fmt_quality(r.high))
    table.caption = st.summary
    table.caption_justify = "left"
    return table


def _trial_table(title: str, rows: tuple[TrialRow, ...], narrow: bool, star: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, show_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("Method" + (" / settings" if narrow else ""), overflow="fold", ratio=1 if narrow else None)
    if not narrow:
        table.add_column("Settings", overflow="fold")
    for name in ("Val.\nquality", "Train\ncost", "p95") if narrow else ("Val. quality", "Train cost", "p95"):
        table.add_column(name, justify="right", no_wrap=True)
    for t in rows:
        mark = f"{star} " if t.best else ""
        method = Text(f"{mark}{t.method}", style="bold green" if t.best else "")
        if t.pareto:
            method.append(" (Pareto)", style="dim")
        if narrow and t.params:
            method.append(f"\n{t.params}", style="dim")
        cells = [str(t.number), method] + ([] if narrow else [t.params])
        cells += [fmt_quality(t.quality), fmt_money(t.train_cost_usd), fmt_ms(t.latency_p95_ms)]
        table.add_row(*cells)
    return table


def _print_study(study: StudyView, console: Console, star: str, ci: str) -> None:
    narrow = console.width < WIDE
    console.print()
    console.print(Text("Fine-tuning search", style="bold"), Text(f"({study.status})", style="dim"))
    console.print(Text(study.summary))
    if study.knowledge:
        console.print(Text(study.knowledge))
    if study.best is not None:
        line = Text(f"{star} Recommended: trial {study.best.number}, {study.best.method}", style="bold green")
        if study.best.params:
            line.append(f" ({study.best.params})", style="green")
        if study.best_eval is not None:
            line.append(f"; eval {fmt_quality(study.best_eval[0])} ({ci} {fmt_ci(study.best_eval[1], study.best_eval[2])})")
        line.append(f"; {fmt_money(study.best.train_cost_usd)}, {fmt_seconds(study.best.train_seconds)} to train")
        console.print(line)
    if study.top_trials:
        console.print(_trial_table("Best trials", study.top_trials, narrow, star))
    if study.pareto:
        console.print(_trial_table("Pareto front (quality, training cost, latency)", study.pareto, narrow, star))
    stopped = [m for m in study.methods if not m.excluded and m.complete == 0 and m.reason]
    excluded = [m for m in study.methods if m.excluded]
    for m in stopped:
        console.print(Text(f"- {m.method}: {m.reason}", style="dim"))
    for m in excluded:
        console.print(Text(f"- {m.method} excluded: {m.reason}", style="dim"))
    for name, reason in study.excluded_objectives:
        console.print(Text(f"- objective {name} not searched: {reason}", style="dim"))
