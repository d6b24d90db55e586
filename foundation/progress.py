"""Progress display for long steps: rich bars in a terminal, nothing with --quiet or --json."""
from __future__ import annotations

import contextlib

from foundation.interrupt import check


class Progress:
    """``with progress.task("Evaluating rag", total=40) as advance: advance(8)``."""

    def __init__(self, console=None, enabled: bool = True):
        self.console = console
        self.enabled = enabled and console is not None
        self._bar = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                                     transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
        return False

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None):
        """Each stage and each of its steps is also where a Ctrl-C that a library dropped stops
        the command (``foundation.interrupt``)."""
        check()
        if self._bar is None:
            yield lambda n=1: check()
            return
        tid = self._bar.add_task(description, total=total)

        def advance(n=1):
            self._bar.advance(tid, n)
            check()

        try:
            yield advance
        finally:
            if total is not None:
                self._bar.update(tid, completed=total)
            self._bar.stop_task(tid)

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, highlight=False)


QUIET = Progress(None, enabled=False)
