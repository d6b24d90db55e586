"""Ctrl-C that always stops a command, and stops it the same way.

CPython raises ``KeyboardInterrupt`` wherever the main thread happens to be, and two places
there break a clean stop:

- inside a finalizer (``__del__``, a weakref callback, run by the garbage collector in the
  middle of torch or transformers code) the exception is printed as "Exception ignored" and
  dropped: the run trains on as if nothing had been pressed;
- inside code run by ``exec``/``eval`` of a string (every dataclass and namedtuple built while a
  library is imported), the interpreter notes an *unhandled* interrupt even when it is caught
  further up, and the process then dies of SIGINT instead of exiting with 130.

So while a command runs, Ctrl-C is also recorded here. ``check()`` (called at every progress
step: each training step, each batch of answers, each stage) raises again if an interrupt was
recorded and not yet handled, so a dropped one stops the run at the next step. An interrupt
that lands in string-``exec``'d code is re-delivered 50 ms later, outside it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

_pending = threading.Event()
REDELIVER_S = 0.05
MAX_DEFERRALS = 40  # then raise wherever it is: a stop within 2 s beats a clean exit status


class _State:
    installed = False
    deferred = 0


def check() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed and not yet handled."""
    if _pending.is_set():
        raise KeyboardInterrupt


def handled() -> None:
    """Called where a ``KeyboardInterrupt`` is caught and the command goes on (or ends) on purpose."""
    _pending.clear()


def _in_string_code(frame) -> bool:
    """Whether ``frame`` runs inside ``exec``/``eval`` of a string (not counting a program that is
    itself such code, ``python -c``: an interrupt leaving that is unhandled indeed)."""
    names = []
    while frame is not None:
        names.append(frame.f_code.co_filename)
        frame = frame.f_back
    while names and names[-1] == "<string>":
        names.pop()
    return "<string>" in names


def _handler(signum, frame):
    _pending.set()
    if _in_string_code(frame) and _State.deferred < MAX_DEFERRALS:
        _State.deferred += 1
        timer = threading.Timer(REDELIVER_S, os.kill, (os.getpid(), signal.SIGINT))
        timer.daemon = True
        timer.start()
        return
    _State.deferred = 0
    raise KeyboardInterrupt


@contextlib.contextmanager
def catching():
    """Record Ctrl-C for ``check()`` while the block runs (main thread only; a process started
    with SIGINT ignored keeps ignoring it)."""
    if (_State.installed or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    previous = signal.signal(signal.SIGINT, _handler)
    _State.installed = True
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _State.installed = False
        _pending.clear()
