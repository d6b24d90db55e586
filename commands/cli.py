"""The `advise` command. Heavy libraries are imported inside the commands, so --help is instant."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from foundation.errors import AdviseError, first_line

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


def _within(lo: float, hi: float):
    """An option's check, as task keys have theirs: a finite number from ``lo`` to ``hi`` (None: its
    default). The error is the usual one line, ``error: --flag: message``."""
    def check(ctx, param, value):
        if value is not None and not (math.isfinite(value) and lo <= value <= hi):
            raise AdviseError(f"must be a number from {lo:g} to {hi:g}, got {value}", where=param.opts[0])
        return value
    return check


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
def validate(task_file: Path = typer.Argument(..., help="task.yaml to check."),
             online: bool = typer.Option(False, "--online", help="Also send one tiny request to each compare: endpoint.")):
    """Check a task.yaml and its data without loading any model."""
    from advisor.tasks import check_task

    _state["task_file"] = str(task_file)
    checked = check_task(task_file)
    if online:
        from foundation.endpoints import check_endpoints

        check_endpoints(checked.task, online=True)
        typer.echo(f"{task_file}: each compare: endpoint answered a one-token request")
    typer.echo(f"{task_file}: ok — {checked.summary()}")
    for note in checked.training:
        typer.echo(f"  {note}")
    _warn(checked.warnings)


def _warn(warnings: list[str]) -> None:
    """Warnings go to stderr like errors, and like them never carry a secret."""
    from foundation.secrets import redact

    for warning in warnings:
        typer.echo(f"warning: {redact(warning)}", err=True)


@app.command()
def run(task_file: Path = typer.Argument(..., help="task.yaml to run."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or tables."),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
        no_tune: bool = typer.Option(False, "--no-tune", help="Stop after the verdict even if fine-tuning wins."),
        seeds: int = typer.Option(1, "--seeds", callback=_within(1, 20),
                                  help="Repeat the measurement with this many seeds and say whether the verdict is stable.")):
    """Measure prompt-only, RAG and a pilot fine-tune; give the verdict; tune if fine-tuning wins."""
    from advisor.pipeline import check_seeds, run_task
    from advisor.tasks import check_task
    from foundation.progress import Progress

    _state["task_file"] = str(task_file)
    checked = check_task(task_file)
    task = checked.task
    check_seeds(task, seeds)
    _state["results"] = task.run_dir / "results.json"
    if not quiet:
        _warn(checked.warnings)
    console = _console(quiet, json_out)
    with Progress(console, enabled=not quiet) as progress:
        results = run_task(checked, progress, tune=not no_tune, seeds=seeds)
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
         fresh: bool = typer.Option(False, "--fresh", help="Start a new study over a finished one (kept as study.db.prev)."),
         storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL, e.g. postgresql://..."),
         n_trials: Optional[int] = typer.Option(None, "--n-trials", callback=_within(1, 100_000), help="Trials for this worker (default: tune.n_trials)."),
         quiet: bool = typer.Option(False, "--quiet", "-q"),
         json_out: bool = typer.Option(False, "--json")):
    """Run (or resume, or join) an Optuna study over PEFT method, rank and learning rate."""
    from advisor.tasks import load_task
    from foundation.progress import Progress
    from advisor.pipeline import tune_task

    if resume and fresh:
        raise AdviseError("--resume continues the study and --fresh starts a new one; give one of them", where="--fresh")
    _state["task_file"] = str(task_file)
    task = load_task(task_file)
    _state["results"] = task.run_dir / "results.json"
    console = _console(quiet, json_out)
    with Progress(console, enabled=not quiet) as progress:
        results = tune_task(task, progress=progress, resume=resume, storage=storage, n_trials=n_trials, fresh=fresh)
    _finish(results, task.run_dir, console, quiet, json_out)


@app.command()
def export(run_dir: Path = typer.Argument(..., help="A run directory with a finished study."),
           out: Path = typer.Option(..., "--out", "-o", help="Where to write the model."),
           merge: bool = typer.Option(False, "--merge", help="Merge the adapter into a full model.")):
    """Export the best trial's adapter (standard PEFT format), optionally merged into the base model."""
    from tuner.export import export_best

    path = export_best(run_dir, out, merge=merge)
    typer.echo(f"wrote {path}")


@app.command()
def schema(markdown: bool = typer.Option(False, "--markdown", help="Print the task.yaml reference page instead."),
           write: Optional[Path] = typer.Option(None, "--write", help="Write task.schema.json and task-yaml.md "
                                                "into this folder (docs).")):
    """Print task.yaml's JSON Schema (for editors), or its reference page; both come from the typed models."""
    from advisor import schema as task_schema

    if write is not None:
        for path in task_schema.write(write):
            typer.echo(f"wrote {path}")
        return
    typer.echo(task_schema.markdown() if markdown else task_schema.schema_text(), nl=False)


# ---------------------------------------------------------------- the service (service/)
_DB_HELP = "State and Optuna studies: postgresql://user@host/db for a team (default: SQLite in --data-dir)."
_QUEUE_HELP = "Job queue: redis://host:6379/0 for a team (default: SQLite in --data-dir)."
_DATA_HELP = "Where uploads, job folders and the SQLite files live (default: $ADVISE_DATA or ~/.local/share/advise)."


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; not loopback needs --tokens."),
          port: int = typer.Option(8000, "--port", callback=_within(1, 65535)),
          db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
          queue: Optional[str] = typer.Option(None, "--queue", help=_QUEUE_HELP),
          data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
          workers: Optional[int] = typer.Option(None, "--workers", callback=_within(0, 64),
                                                help="Local worker pool (default: 1 embedded, 0 with --queue)."),
          tokens: Optional[Path] = typer.Option(None, "--tokens", help="API tokens, lines `<read|submit> <name> <token>`."),
          allow_remote_code: bool = typer.Option(False, "--allow-remote-code", help="Accept trust_remote_code: true."),
          max_upload_mb: Optional[float] = typer.Option(None, "--max-upload-mb", callback=_within(0.01, 100_000),
                                                 help="Largest submission in MB (default 100)."),
          heartbeat: Optional[float] = typer.Option(None, "--heartbeat", callback=_within(0.1, 3600),
                                             help="Seconds between job heartbeats (10)."),
          dashboard_port: Optional[int] = typer.Option(None, "--dashboard-port", callback=_within(1, 65535),
                                                       help="Start optuna-dashboard on loopback at this port."),
          dashboard_url: Optional[str] = typer.Option(None, "--dashboard-url", help="Link sweeps to this optuna-dashboard.")):
    """Web app and JSON API: submit tasks, watch runs and sweeps live, read verdicts and reports."""
    from service.app import serve as run_server
    from service.settings import make_settings

    run_server(make_settings(host=host, port=port, db=db, queue=queue, data_dir=data_dir, workers=workers,
                             tokens=tokens, allow_remote_code=allow_remote_code, upload_mb=max_upload_mb,
                             heartbeat_s=heartbeat, dashboard_port=dashboard_port, dashboard_url=dashboard_url))


@app.command()
def worker(db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP),
           queue: Optional[str] = typer.Option(None, "--queue", help=_QUEUE_HELP),
           data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
           jobs: int = typer.Option(1, "--jobs", callback=_within(1, 64), help="Jobs run at the same time (each in its own process)."),
           allow_remote_code: bool = typer.Option(False, "--allow-remote-code"),
           heartbeat: Optional[float] = typer.Option(None, "--heartbeat", callback=_within(0.1, 3600),
                                             help="Seconds between job heartbeats (10).")):
    """Take jobs from the service's queue (on each GPU machine, with the server's --db and --queue)."""
    from service.app import work
    from service.settings import make_settings

    work(make_settings(db=db, queue=queue, data_dir=data_dir, allow_remote_code=allow_remote_code,
                       heartbeat_s=heartbeat), workers=jobs)


@app.command()
def submit(task_file: Path = typer.Argument(..., help="task.yaml; its folder is sent (without its runs)."),
           server: str = typer.Option(..., "--server", envvar="ADVISE_SERVER", help="e.g. http://127.0.0.1:8000"),
           wait: bool = typer.Option(False, "--wait", help="Follow the run; exit 0 when it completes, 1 if not."),
           token: Optional[str] = typer.Option(None, "--token", envvar="ADVISE_TOKEN", help="A submit token."),
           mode: str = typer.Option("run", "--mode", help="run (advise run) or tune (advise tune)."),
           no_tune: bool = typer.Option(False, "--no-tune", help="Stop after the verdict even if fine-tuning wins."),
           workers: int = typer.Option(1, "--workers", callback=_within(1, 16), help="Workers sharing the study."),
           json_out: bool = typer.Option(False, "--json", help="Print the run as JSON on stdout.")):
    """Submit a task to an `advise serve` and, with --wait, follow it to its verdict."""
    import json

    from service import client

    if mode not in ("run", "tune"):
        raise AdviseError(f"expected run or tune, got {mode!r}", where="--mode")
    server = client.check_server(server)
    token = client.check_token(token)
    run = client.submit(task_file, server, token=token, mode=mode, tune=not no_tune, workers=workers)
    client.stderr(f"submitted run {run['id']}: {server.rstrip('/')}{run['url']}")
    code = 0
    if wait:
        run = client.follow(server, run["id"], token, client.stderr)
        code = client.print_outcome(run, server, client.stderr)
    if json_out:
        typer.echo(json.dumps(run, indent=2))
    raise typer.Exit(code)


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
    """Entry point: user errors print one line and exit 2; --debug shows the traceback; Ctrl-C
    says what was kept and exits 130 (SIGTERM: the same line, exit 143)."""
    from foundation import interrupt

    args = argv if argv is not None else sys.argv[1:]
    _state.clear()  # what an earlier call in this process (a test) left says nothing of this one
    _state.update(debug=False, since=time.time())
    with interrupt.catching():
        code = _dispatch(args)
        # typer turns a KeyboardInterrupt into a silent exit 130; a study stopped by SIGTERM ends normally
        if code == 130 or (code == 0 and interrupt.terminated()):
            interrupt.handled()
            print(_interrupted_line(), file=sys.stderr)
            code = 143 if interrupt.terminated() else 130
    return code


def _interrupted_line() -> str:
    """Where what was measured before Ctrl-C is, if this command wrote anything yet."""
    path = _state.get("results")
    if path is None:
        return "interrupted"
    try:
        if path.stat().st_mtime >= _state["since"]:
            return f"interrupted: what was measured is kept in {path}"
    except OSError:
        pass
    return "interrupted before anything was measured"


def _dispatch(args: list[str]) -> int:
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
        _error(e.one_line())
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except (KeyboardInterrupt, *aborts):
        return 130
    except usage_errors as e:
        if debug:
            raise
        _error(_usage_line(e))
        return 2
    except OSError as e:  # a path the system refuses (too long, under a file, read-only): the user's to fix
        if debug:
            raise
        if not (e.filename and e.strerror):
            return _internal_error(e)
        _error(f"{e.filename}: {e.strerror.lower()}")
        return 2
    except Exception as e:  # a bug, not bad input: still one line, and how to see more
        if debug:
            raise
        return _internal_error(e)
    return code if isinstance(code, int) else 0


def _internal_error(e: Exception) -> int:
    first = first_line(e)
    kept = f"what was measured is kept in {_state['results']}; " if _state.get("results") else ""
    _error(f"internal error {type(e).__name__}: {first} (a bug in advise; {kept}rerun with --debug for the traceback)")
    return 1


def _error(line: str) -> None:
    """An error line on stderr, without any secret it may quote (a token, a key, a URL's password)."""
    from foundation.secrets import redact

    print(f"error: {redact(line)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
