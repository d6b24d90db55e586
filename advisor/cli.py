"""The `advise` command. Heavy libraries are imported inside the commands, so --help is instant."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from foundation.errors import AdviseError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Do we need to fine-tune? Measure prompt-only, RAG and a pilot fine-tune on your own data.")
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    _state["debug"] = debug


def _console(quiet: bool = False, json_out: bool = False):
    from rich.console import Console

    # With --json, stdout is for the JSON alone; progress and notes go to stderr.
    return Console(stderr=json_out, quiet=quiet and not json_out)


@app.command()
def init(folder: Path = typer.Argument(..., help="Folder to create with a commented task.yaml and tiny data.")):
    """Scaffold a new task folder."""
    from advisor.scaffold import write_scaffold

    written = write_scaffold(folder)
    for p in written:
        typer.echo(f"wrote {p}")
    typer.echo(f"next: advise validate {folder / 'task.yaml'}")


@app.command()
def validate(task_file: Path = typer.Argument(..., help="task.yaml to check.")):
    """Check a task.yaml and its data without loading any model."""
    from advisor.tasks import check_task

    checked = check_task(task_file)
    typer.echo(f"{task_file}: ok — {checked.summary()}")
    for warning in checked.warnings:
        typer.echo(f"warning: {warning}", err=True)


@app.command()
def run(task_file: Path = typer.Argument(..., help="task.yaml to run."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or tables."),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
        no_tune: bool = typer.Option(False, "--no-tune", help="Stop after the verdict even if fine-tuning wins.")):
    """Measure prompt-only, RAG and a pilot fine-tune; give the verdict; tune if fine-tuning wins."""
    from advisor.pipeline import run_task
    from advisor.tasks import check_task
    from foundation.progress import Progress

    checked = check_task(task_file)
    task = checked.task
    console = _console(quiet, json_out)
    try:
        with Progress(console, enabled=not quiet) as progress:
            results = run_task(checked, progress, tune=not no_tune)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: what was measured is kept in {task.run_dir / 'results.json'}", err=True)
        raise typer.Exit(130)
    _finish(results, task.run_dir, console, quiet, json_out)


def _finish(results, run_dir: Path, console, quiet: bool, json_out: bool) -> None:
    import reports

    html = reports.write_html(results, run_dir)
    if json_out:
        typer.echo(reports.report_json(results, run_dir))
    elif not quiet:
        reports.print_summary(results, run_dir, console)
        console.print(f"report: {html}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory (runs/<name>) holding results.json."),
           quiet: bool = typer.Option(False, "--quiet", "-q"),
           json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout.")):
    """Re-render the terminal summary and report.html from results.json, without re-running."""
    from foundation.results import load_results

    results = load_results(run_dir)
    _finish(results, run_dir if run_dir.is_dir() else run_dir.parent, _console(quiet, json_out), quiet, json_out)


@app.command()
def tune(task_file: Path = typer.Argument(..., help="task.yaml whose `tune:` section defines the study."),
         resume: bool = typer.Option(False, "--resume", help="Continue the study in the run directory."),
         storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL, e.g. postgresql://..."),
         n_trials: Optional[int] = typer.Option(None, "--n-trials", help="Trials for this worker (default: tune.n_trials)."),
         quiet: bool = typer.Option(False, "--quiet", "-q"),
         json_out: bool = typer.Option(False, "--json")):
    """Run (or resume, or join) an Optuna study over PEFT method, rank and learning rate."""
    from advisor.tasks import load_task
    from foundation.progress import Progress
    from advisor.pipeline import tune_task

    task = load_task(task_file)
    console = _console(quiet, json_out)
    with Progress(console, enabled=not quiet) as progress:
        results = tune_task(task, progress=progress, resume=resume, storage=storage, n_trials=n_trials)
    _finish(results, task.run_dir, console, quiet, json_out)


@app.command()
def export(run_dir: Path = typer.Argument(..., help="A run directory with a finished study."),
           out: Path = typer.Option(..., "--out", "-o", help="Where to write the model."),
           merge: bool = typer.Option(False, "--merge", help="Merge the adapter into a full model.")):
    """Export the best trial's adapter (standard PEFT format), optionally merged into the base model."""
    from tuner.export import export_best

    path = export_best(run_dir, out, merge=merge)
    typer.echo(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2; --debug shows the traceback."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Outside standalone mode click returns a command's Exit code instead of raising it.
        code = app(args=argv, standalone_mode=False)
    except AdviseError as e:
        if debug:
            raise
        print(f"error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # click's usage errors and the like
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        if isinstance(e, click.exceptions.Abort):
            return 130
        raise
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
