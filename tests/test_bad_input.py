"""The bad-input corpus: every mistake a user plausibly makes in a task folder gets one line on
stderr, ``error: <file>: <key path or line N>: <message>``, exit code 2 and no traceback.

Each folder in tests/bad_inputs/ is one case; tests/bad_inputs/cases.yaml says what the error
must name. Every case runs through ``commands.cli.main`` (what the ``advise`` script calls) in a
copy of its folder. A real ``python -m commands.cli`` process checks one case per code path
(YAML, keys, paths, each file reader, splits, corpus) and every ``advise run`` case: one process
per case for all ~90 cases would cost a minute of CPU on a shared 2-core machine.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES: dict[str, dict] = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))
FOLDERS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
ADVISE = [sys.executable, "-m", "commands.cli"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CASE_KEYS = {"about", "file", "where", "message", "arg", "command", "chmod", "needs_non_root", "xfail", "fifo",
             "symlink", "needs_no_cuda", "results_json", "files", "secret"}

# One case per code path that can print the error line, run as a real process: a stray warning
# or log line on stderr from any library on that path would break the one-line contract.
PROCESS_SAMPLE = (
    "task-file-missing",          # load_task: path checks
    "yaml-unclosed-bracket",      # YAML parser
    "unknown-nested-key",         # pydantic validation
    "train-file-missing",         # data paths
    "data-non-utf8",              # jsonl reader
    "json-not-a-list",            # json reader
    "csv-extra-value",            # csv reader
    "parquet-not-parquet",        # pyarrow
    "mixed-formats",              # record formats
    "eval-too-small",             # splits
    "corpus-non-utf8",            # corpus
)


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _argv(case: dict) -> list[str]:
    arg = case.get("arg", "task.yaml")
    argv = [case.get("command", "validate"), *(arg if isinstance(arg, list) else [arg])]
    return argv + (["--quiet"] if case.get("command") == "run" else [])


def _prepare(name: str, root: Path) -> Path:
    """A private copy of the case folder (runs write there; chmod must not touch the repo)."""
    folder = root / name
    shutil.copytree(CORPUS / name, folder, symlinks=True)
    case = CASES[name]
    for rel in case.get("fifo", []):  # git cannot hold a named pipe: made here
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(folder / rel)
    for rel, target in case.get("symlink", {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, folder / rel)
    # git keeps no empty folder, and runs/ is ignored: a case's run folder is written here
    for rel, text in case.get("files", {}).items():
        if rel.endswith("/"):
            (folder / rel).mkdir(parents=True, exist_ok=True)
        else:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text, encoding="utf-8")
    if "results_json" in case:  # a results file as written text, for `advise report` cases
        (folder / "runs" / "r").mkdir(parents=True, exist_ok=True)
        (folder / "runs" / "r" / "results.json").write_text(case["results_json"], encoding="utf-8")
    for rel, mode in case.get("chmod", {}).items():
        os.chmod(folder / rel, mode)
    return folder


def _run_process(name: str, root: Path) -> tuple[Path, subprocess.CompletedProcess]:
    folder = _prepare(name, root)
    proc = subprocess.run([*ADVISE, *_argv(CASES[name])], cwd=folder, capture_output=True, text=True, env=_env(),
                          timeout=300)
    return folder, proc


def _marks(name: str) -> list:
    case = CASES.get(name, {})
    marks = []
    if case.get("xfail"):
        marks.append(pytest.mark.xfail(strict=True, reason=case["xfail"]))
    if case.get("needs_non_root") and IS_ROOT:
        marks.append(pytest.mark.skip(reason="root can read files without read permission"))
    if case.get("needs_no_cuda") and _has_cuda():
        marks.append(pytest.mark.skip(reason="this machine has CUDA, so device: cuda is not an error here"))
    return marks


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _in_process_params():
    return [pytest.param(n, marks=_marks(n), id=n) for n in FOLDERS if CASES.get(n, {}).get("command") != "run"]


def _process_params():
    names = [n for n in FOLDERS if CASES.get(n, {}).get("command") == "run"] + list(PROCESS_SAMPLE)
    return [pytest.param(n, marks=_marks(n), id=n) for n in names]


@pytest.fixture(scope="module", autouse=True)
def processes(request, tmp_path_factory):
    """Start the selected process cases in the background (slow `advise run` first) while the
    in-process cases run; each process test waits for its own."""
    selected = {item.callspec.params["process_case"] for item in request.session.items
                if item.module is request.module and "process_case" in getattr(getattr(item, "callspec", None), "params", {})}
    root = tmp_path_factory.mktemp("bad_input_processes")
    with ThreadPoolExecutor(2) as pool:
        futures: dict[str, Future] = {
            n: pool.submit(_run_process, n, root)
            for n in sorted(selected & set(CASES), key=lambda n: (CASES[n].get("command") != "run", n))}
        yield futures
        for f in futures.values():
            f.cancel()


def _check(case: dict, folder: Path, proc: subprocess.CompletedProcess) -> None:
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout, shown
    assert proc.returncode == 2, shown
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, shown
    assert "ok" not in proc.stdout.split(), shown
    line = lines[0]
    assert line.startswith("error: "), f"not an error line: {line!r}"
    if "secret" in case:  # a token or password in the input: in no output, in no file the command wrote
        planted = {p.relative_to(CORPUS / folder.name) for p in (CORPUS / folder.name).rglob("*")}
        planted |= {Path(rel) for rel in case.get("files", {})}
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.relative_to(folder) not in planted:
                assert case["secret"] not in path.read_text(errors="replace"), f"the secret is in {path}"
        assert case["secret"] not in proc.stdout + proc.stderr, shown
    rest = line[len("error: "):]
    if "file" in case:  # a flag's error names the flag (`where`) first, with no file
        file_shown, sep, rest = rest.partition(": ")
        assert sep, f"no file in {line!r}"
        wanted = [(folder / f).resolve() for f in _as_list(case["file"])]
        assert (folder / file_shown).resolve() in wanted, f"names {file_shown!r}, expected {case['file']!r}: {line!r}"
    message = rest
    if "where" in case:
        found = [w for w in _as_list(case["where"]) if rest.startswith(f"{w}: ")]
        assert found, f"key/line {case['where']!r} not named right after the file: {line!r}"
        message = rest[len(found[0]) + 2:]
    assert case["message"].lower() in message.lower(), f"message lacks {case['message']!r}: {line!r}"


def test_every_folder_has_a_case_and_every_case_a_folder():
    assert sorted(set(FOLDERS) - set(CASES)) == [], "case folders without an entry in cases.yaml"
    assert sorted(set(CASES) - set(FOLDERS)) == [], "cases.yaml entries without a folder"
    assert set(PROCESS_SAMPLE) <= set(CASES)
    for name, case in CASES.items():
        assert {"about", "message"} <= set(case), f"{name}: about and message are required"
        assert "file" in case or str(case.get("where", "")).startswith("--"), f"{name}: file (or a --flag where)"
        assert not set(case) - CASE_KEYS, f"{name}: unknown keys {sorted(set(case) - CASE_KEYS)} in cases.yaml"


@pytest.mark.parametrize("case_name", _in_process_params())
def test_bad_input_gives_one_line_error(case_name, tmp_path, monkeypatch, capsys):
    from commands.cli import main

    assert case_name in CASES, f"tests/bad_inputs/{case_name}/ has no entry in cases.yaml"
    folder = _prepare(case_name, tmp_path)
    monkeypatch.chdir(folder)
    argv = _argv(CASES[case_name])
    try:
        code, tb = main(argv), ""
    except BaseException:  # what a user would see as a traceback
        code, tb = 1, traceback.format_exc()
    out, err = capsys.readouterr()
    _check(CASES[case_name], folder, subprocess.CompletedProcess(argv, code, out, err + tb))


@pytest.mark.parametrize("process_case", _process_params())
def test_bad_input_through_a_real_process(process_case, processes):
    folder, proc = processes[process_case].result()
    _check(CASES[process_case], folder, proc)


def test_debug_shows_the_traceback(tmp_path):
    folder = _prepare("yaml-unclosed-bracket", tmp_path)
    proc = subprocess.run([*ADVISE, "--debug", "validate", "task.yaml"], cwd=folder, capture_output=True,
                          text=True, env=_env(), timeout=120)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert "AdviseError" in proc.stderr and "malformed YAML" in proc.stderr


def test_a_scaffolded_task_validates(tmp_path):
    init = subprocess.run([*ADVISE, "init", "my-task"], cwd=tmp_path, capture_output=True, text=True, env=_env(),
                          timeout=120)
    assert init.returncode == 0, init.stderr
    proc = subprocess.run([*ADVISE, "validate", "my-task/task.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    first, *notes = proc.stdout.splitlines()
    assert " ok " in first, proc.stdout
    assert notes and all(n.startswith("  ") and "sequence length" in n for n in notes), proc.stdout
