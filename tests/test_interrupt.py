"""Ctrl-C stops a command the same way wherever it lands (foundation/interrupt.py).

Each case runs in its own process: signals go to a process's main thread, and the two CPython
behaviours these guard against (an interrupt dropped in a finalizer, an interrupt in
string-exec'd code turning the exit status into death by SIGINT) only show at process level."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    # A module run with -m, as the tests run advise (`python -c` code is itself string code, and a
    # script file that ends in sys.exit() would hide the second case's exit status).
    (tmp_path / "interrupt_case.py").write_text("import os, signal, sys, time\nsys.path.insert(0, %r)\n" % str(REPO)
                                                + textwrap.dedent(body))
    return subprocess.run([sys.executable, "-m", "interrupt_case"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_an_interrupt_dropped_in_a_finalizer_stops_at_the_next_progress_step(tmp_path):
    r = run_script(tmp_path, """
        from foundation import interrupt
        from foundation.progress import QUIET

        class Finalized:
            def __del__(self):  # the interrupt lands here; CPython prints it and drops it
                os.kill(os.getpid(), signal.SIGINT)
                sum(range(200_000))

        steps = 0
        with interrupt.catching():
            try:
                with QUIET.task("training", total=100) as advance:
                    for _ in range(100):
                        steps += 1
                        if steps == 3:
                            Finalized()
                            print("after the finalizer", flush=True)
                        advance()
            except KeyboardInterrupt:
                print(f"stopped after {steps} steps", flush=True)
    """)
    assert "Exception ignored" in r.stderr and "KeyboardInterrupt" in r.stderr, r.stderr  # the drop happened
    assert "after the finalizer" in r.stdout and "stopped after 3 steps" in r.stdout, (r.stdout, r.stderr)


def test_an_interrupt_that_datasets_swallows_while_hashing_stops_without_a_warning(tmp_path):
    """datasets' fingerprinting wraps pickling in a bare ``except:``: a Ctrl-C landing there is
    swallowed and logged as a transform that "couldn't be hashed". The run still stops at the next
    step, and the user sees only our one line, not datasets' warning (a full run's test hit this)."""
    r = run_script(tmp_path, """
        from foundation import interrupt
        from foundation.runinfo import quiet_libraries

        quiet_libraries()
        import datasets

        class Unpicklable:
            def __reduce__(self):  # the interrupt lands while datasets pickles the map's arguments
                os.kill(os.getpid(), signal.SIGINT)
                sum(range(200_000))
                raise TypeError("not reached")

        with interrupt.catching():
            try:
                data = datasets.Dataset.from_dict({"x": [1, 2, 3]})
                data = data.map(lambda row, tag: {"y": row["x"] * 2}, fn_kwargs={"tag": Unpicklable()})
                print(f"mapped {len(data)} rows", flush=True)
                interrupt.check()
            except KeyboardInterrupt:
                print("stopped", flush=True)
    """)
    assert "mapped 3 rows" in r.stdout and "stopped" in r.stdout, (r.stdout, r.stderr)  # swallowed, then caught up
    assert "hashed" not in r.stderr and r.stderr.strip() == "", r.stderr


def test_an_interrupt_in_string_exec_code_still_exits_130(tmp_path):
    """dataclasses and namedtuple build code with exec(string); an interrupt raised in there marks
    the process as dying of an unhandled Ctrl-C even when it is caught (exit status -2, not 130)."""
    r = run_script(tmp_path, """
        from foundation import interrupt

        with interrupt.catching():
            try:
                exec("os.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(300_000): pass")
                time.sleep(5)
                print("not interrupted", flush=True)
            except KeyboardInterrupt:
                interrupt.handled()
                print("caught", flush=True)
        sys.exit(130)
    """)
    assert r.returncode == 130 and r.stdout.strip() == "caught", (r.returncode, r.stdout, r.stderr)


def test_ctrl_c_anywhere_in_a_command_prints_one_line_and_exits_130(tmp_path):
    """typer turns a KeyboardInterrupt into a silent exit 130; `advise` still says it was interrupted."""
    r = run_script(tmp_path, """
        from commands import cli

        @cli.app.command("nap")
        def nap():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)

        sys.exit(cli.main(["nap"]))
    """)
    assert r.returncode == 130 and r.stderr == "interrupted\n", (r.returncode, r.stderr)


def test_a_handled_interrupt_is_not_raised_again(tmp_path):
    """After a command catches Ctrl-C on purpose (the study ends and is summarised), later steps go on."""
    r = run_script(tmp_path, """
        from foundation import interrupt
        from foundation.progress import QUIET

        with interrupt.catching():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt:
                interrupt.handled()
            with QUIET.task("summarising", total=3) as advance:
                for _ in range(3):
                    advance()
            print("summarised", flush=True)
    """)
    assert r.returncode == 0 and r.stdout.strip() == "summarised", (r.returncode, r.stdout, r.stderr)


def test_the_interrupted_line_says_whether_this_command_wrote_results_yet(tmp_path):
    """An old results.json (an earlier run) is not what this run measured."""
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text("{}")
    os.utime(old, (1, 1))
    lines = []
    for path, write in ((old, False), (new, True)):
        r = run_script(tmp_path, f"""
            from pathlib import Path
            from commands import cli

            @cli.app.command("nap")
            def nap():
                cli._state["results"] = Path({str(path)!r})
                if {write}:
                    Path({str(path)!r}).write_text("{{}}")
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)

            sys.exit(cli.main(["nap"]))
        """)
        assert r.returncode == 130, r.stderr
        lines.append(r.stderr)
    assert lines == ["interrupted before anything was measured\n", f"interrupted: what was measured is kept in {new}\n"]


def test_sigterm_from_timeout_is_a_stop_like_ctrl_c_and_exits_143(tmp_path):
    """`timeout`, a batch scheduler or a container stop sends SIGTERM: the same one line as Ctrl-C
    (what this command measured is kept and named), exit 143 instead of dying silently."""
    results = tmp_path / "results.json"
    (tmp_path / "interrupt_case.py").write_text(f"""import sys, time
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from commands import cli

@cli.app.command("nap")
def nap():
    cli._state["results"] = Path({str(results)!r})
    Path({str(results)!r}).write_text("{{}}")
    print("measured", flush=True)
    for _ in range(600):
        time.sleep(0.1)

sys.exit(cli.main(["nap"]))
""")
    r = subprocess.run(["timeout", "--preserve-status", "-s", "TERM", "8", sys.executable, "-m", "interrupt_case"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.stdout == "measured\n", (r.stdout, r.stderr)
    assert r.returncode == 143 and r.stderr == f"interrupted: what was measured is kept in {results}\n", \
        (r.returncode, r.stderr)


def test_sigterm_in_a_study_ends_it_like_ctrl_c(tmp_path):
    """A stop that the command catches on purpose (the study summarises and saves what it found)
    still exits 143 with the interrupted line when it came as SIGTERM."""
    r = run_script(tmp_path, """
        from pathlib import Path
        from commands import cli
        from foundation import interrupt

        @cli.app.command("study")
        def study():
            cli._state["results"] = Path("results.json")
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt:
                interrupt.handled()
            Path("results.json").write_text("{}")
            print("saved", flush=True)

        sys.exit(cli.main(["study"]))
    """)
    assert r.stdout == "saved\n" and r.returncode == 143, (r.returncode, r.stdout, r.stderr)
    assert r.stderr == "interrupted: what was measured is kept in results.json\n", r.stderr
