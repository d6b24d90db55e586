"""The `advise` command. Heavy libraries are imported inside the commands, so --help is instant."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from foundation.errors import AdviseError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Do we need to fine-tune? Measure prompt-only, RAG and a pilot fine-tune on your own data.")
_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from foundation import __version__

        typer.echo(f"advise {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")):
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

    _state["task_file"] = str(task_file)
    checked = check_task(task_file)
    typer.echo(f"{task_file}: ok — {checked.summary()}")
    for note in checked.training:
        typer.echo(f"  {note}")
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

    _state["task_file"] = str(task_file)
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
        console.print(f"report: {html}", markup=False, highlight=False)


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

    _state["task_file"] = str(task_file)
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


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage-error types, abort types) of every click the installed typer may raise from: its own
    bundled copy (typer ≥ 0.24 ships ``typer._click``) and the ``click`` package."""
    import importlib

    errors, aborts = [], []
    for name in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors += [getattr(module, "ClickException")] if hasattr(module, "ClickException") else []
        aborts += [getattr(module, "Abort")] if hasattr(module, "Abort") else []
    return tuple(errors), tuple(aborts)


def _usage_line(e) -> str:
    """A click usage error in one line, with where to find the usage."""
    message = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    return f"{message} (see {ctx.command_path} --help)" if ctx is not None else message


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2; --debug shows the traceback."""
    args = argv if argv is not None else sys.argv[1:]
    debug = "--debug" in args
    usage_errors, aborts = _click_exceptions()
    try:
        # Outside standalone mode click returns a command's Exit code instead of raising it.
        code = app(args=args, prog_name="advise", standalone_mode=False)
    except AdviseError as e:
        if debug:
            raise
        if e.file is None and _state.get("task_file") is not None:
            e = AdviseError(e.message, file=_state["task_file"], where=e.where)
        print(f"error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except (KeyboardInterrupt, *aborts):
        print("interrupted", file=sys.stderr)
        return 130
    except usage_errors as e:
        if debug:
            raise
        print(f"error: {_usage_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug, not bad input: still one line, and how to see more
        if debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"error: internal error {type(e).__name__}: {first} (a bug in advise; what was measured is kept in "
              "results.json; rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
