"""User-facing errors: one line, names the file and the key or line, exit code 2."""
from __future__ import annotations

from pathlib import Path


class AdviseError(Exception):
    """An error in the user's input. The CLI prints it as one line and exits with code 2.

    >>> str(AdviseError("bad value", file="task.yaml", where="data.train"))
    'task.yaml: data.train: bad value'
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str | Path | None = None, where: str | int | None = None):
        self.message = message
        self.file = str(file) if file is not None else None
        self.where = where
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.where is not None and self.where != "":
            parts.append(f"line {self.where}" if isinstance(self.where, int) else str(self.where))
        parts.append(self.message)
        return ": ".join(parts).translate(_VISIBLE)


# A message quotes the user's text (keys, values, paths); a newline or control character in it
# would break the one-line promise or the terminal, so it is shown escaped.
def first_line(e: BaseException) -> str:
    """An exception's message as one short line, for a one-line error."""
    return (str(e).strip().splitlines() or [""])[0][:300]


_VISIBLE = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}
