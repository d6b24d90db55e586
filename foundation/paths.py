"""Paths as a user reads them in messages, and the checks made before a path is opened.

A FIFO given as a data file would block ``open()`` forever, a symlink loop raises ELOOP deep in a
reader, a corpus folder of ``/`` would be walked for minutes: every file the product reads is
checked here first, with ``os.stat`` (which never blocks), and every error names the file.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from foundation.errors import AdviseError

MAX_FILE_BYTES = 4 * 2**30  # a data or corpus file larger than this is almost surely a mistake
MAX_WALK_ENTRIES = 200_000  # files and folders looked at under one corpus folder


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):
        return str(path)


def _stat(path: Path, shown: str, where) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # a missing folder, or a file used as one: no such path
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise AdviseError(f"symlink loop: {shown}", file=shown if where is None else None, where=where) from None
        if e.errno == errno.ENAMETOOLONG:
            raise AdviseError(f"name too long for the file system: {shown[:80]}…", where=where) from None
        raise AdviseError(f"cannot read {shown}: {e.strerror}", where=where) from None


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path: Path, shown: str | None = None, *, task_file: str | None = None,
                       where: str | None = None) -> Path:
    """``path`` if it is a readable regular file; else an AdviseError naming it.

    With ``task_file`` and ``where`` the error names the task file and the key that gave the path
    (``task.yaml: data.train: file not found: data/x.jsonl``); otherwise the file itself.
    """
    shown = shown or display_path(path)
    owner = task_file if task_file is not None else shown
    key = where if task_file is not None else None
    st = _stat(Path(path), shown, key)
    if st is None:
        raise AdviseError(f"file not found: {shown}" if task_file else "file not found", file=owner, where=key)
    if not stat.S_ISREG(st.st_mode):
        what = file_kind(st.st_mode)
        raise AdviseError(f"is {what}, not a data file: {shown}" if task_file else f"is {what}, not a regular file",
                          file=owner, where=key)
    if st.st_size > MAX_FILE_BYTES:
        raise AdviseError(f"{shown} is {st.st_size / 2**30:.1f} GiB; files over {MAX_FILE_BYTES // 2**30} GiB "
                          "are not read", file=owner, where=key)
    if not os.access(path, os.R_OK):
        raise AdviseError(f"cannot read {shown}: permission denied" if task_file else "cannot read: permission denied",
                          file=owner, where=key)
    return Path(path)


def read_text(path: Path, shown: str | None = None) -> str:
    """A user's text file (UTF-8, a BOM allowed), checked first; errors name the file and line."""
    shown = shown or display_path(path)
    check_regular_file(path, shown)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise AdviseError(f"cannot read: {e.strerror}", file=shown) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AdviseError(f"not valid UTF-8 (byte {e.start})", file=shown, where=raw[: e.start].count(b"\n") + 1) from None


def walk_files(folder: Path, suffixes: tuple[str, ...], *, task_file: str, where: str,
               skipped: list[Path] | None = None) -> list[Path]:
    """Regular files with ``suffixes`` under ``folder``, sorted; symlinked folders are not followed,
    special files are skipped, and a folder too large to be a corpus is an error. Files of other
    types (not hidden ones) are added to ``skipped`` when given."""
    found, seen = [], 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        seen += len(dirs) + len(files)
        if seen > MAX_WALK_ENTRIES:
            raise AdviseError(f"{display_path(folder)} holds more than {MAX_WALK_ENTRIES:,} files and folders; "
                              "point at the folder of the documents", file=task_file, where=where)
        for name in sorted(files):
            path = Path(root) / name
            if path.suffix.lower() not in suffixes:
                if skipped is not None and not name.startswith("."):
                    skipped.append(path)
                continue
            try:
                st = os.stat(path)
            except OSError:  # a dangling link or a loop: not a document
                continue
            if stat.S_ISREG(st.st_mode):
                found.append(path)
    return found


def check_writable_dir(path: Path, *, task_file: str, where: str) -> None:
    """``path`` can be created (or exists as a folder) and written to; no component is too long."""
    path = Path(path)
    for part in path.parts:
        if len(part.encode()) > 255:
            raise AdviseError(f"the folder name {part[:40]}… ({len(part.encode())} bytes) is longer than the file "
                              "system allows (255 bytes)", file=task_file, where=where)
    probe = path
    while True:
        st = _stat(probe, display_path(probe), where)
        if st is not None:
            break
        if probe.parent == probe:
            return
        probe = probe.parent
    if not stat.S_ISDIR(st.st_mode):
        raise AdviseError(f"{display_path(probe)} is {file_kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else 'a file'}, "
                          "so the run folder cannot be made there", file=task_file, where=where)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise AdviseError(f"cannot write to {display_path(probe)}: permission denied", file=task_file, where=where)


# What a run writes in runs/<name>/: files replaced or rewritten, and folders it fills.
RUN_FILES = ("results.json", "results.prev.json", "report.html", "study.db", "study.db.prev", "trials.csv",
             ".advise.lock", "rag/meta.json", "rag/index.faiss", "judge/grades.jsonl")
RUN_FOLDERS = ("adapters", "predictions", "rag", "judge", "endpoints", "seeds")
FILES_IN = {"predictions": ".jsonl"}  # every <name>.jsonl in predictions/ is a candidate's answers
FOLDERS_IN = ("adapters",)  # every entry in adapters/ is a saved adapter or model (a folder)


def check_run_outputs(run_dir: Path, *, task_file: str, where: str) -> None:
    """Every path a run will write in ``run_dir`` that already exists is of the kind the run writes
    there (a file or a folder) and can be written: caught before any work, not after it, when
    saving would fail. A path that does not exist yet is made in ``run_dir`` (``check_writable_dir``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    wanted = {rel: False for rel in RUN_FILES} | {rel: True for rel in RUN_FOLDERS}
    for folder, suffix in FILES_IN.items():
        wanted |= {f"{folder}/{p.name}": False for p in _entries(run_dir / folder) if p.name.endswith(suffix)}
    for folder in FOLDERS_IN:
        wanted |= {f"{folder}/{p.name}": True for p in _entries(run_dir / folder) if not p.name.startswith(".")}
    for rel, is_folder in wanted.items():
        _check_output(run_dir / rel, is_folder, task_file=task_file, where=where)


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return []


def _check_output(path: Path, is_folder: bool, *, task_file: str, where: str) -> None:
    shown = display_path(path)
    st = _stat(path, shown, where)
    if st is None:
        return
    if is_folder and not stat.S_ISDIR(st.st_mode):
        raise AdviseError(f"{shown} is {file_kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else 'a file'}, but a run "
                          "writes a folder there; move it out of the way", file=task_file, where=where)
    if not is_folder and not stat.S_ISREG(st.st_mode):
        raise AdviseError(f"{shown} is {file_kind(st.st_mode)}, but a run writes a file there; move it out of the way",
                          file=task_file, where=where)
    if not os.access(path, os.W_OK | (os.X_OK if is_folder else 0)):
        raise AdviseError(f"cannot write to {shown}: permission denied", file=task_file, where=where)
