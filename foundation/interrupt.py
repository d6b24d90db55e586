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

SIGTERM (what ``timeout``, a batch scheduler or a container stop sends) is the same stop: it is
recorded and raised as ``KeyboardInterrupt`` too, and ``terminated()`` says so, so the command
prints the same line and exits 143 instead of 130.
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
    terminated = False  # the stop came as SIGTERM


def check() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed and not yet handled."""
    if _pending.is_set():
        raise KeyboardInterrupt


def terminated() -> bool:
    """Whether the stop being handled came as SIGTERM (exit 143) rather than Ctrl-C (exit 130)."""
    return _State.terminated


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
    _State.terminated = _State.terminated or signum == signal.SIGTERM
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
    # SIGTERM only when nothing took it over (a parent may have set it ignored on purpose)
    term = signal.signal(signal.SIGTERM, _handler) if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else None
    _State.installed, _State.terminated = True, False
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if term is not None:
            signal.signal(signal.SIGTERM, term)
        _State.installed = False
        _pending.clear()
