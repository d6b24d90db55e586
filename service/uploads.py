"""An uploaded task folder made safe, then checked the way the CLI checks it.

- Sizes: the request body is limited by the app; here the number of files and the unpacked size.
- Zip-slip and path traversal: every name is a relative path without ``..``, a drive or a
  backslash; symbolic links in a zip are refused; every file lands inside the upload folder.
- task.yaml: small, few YAML aliases (no "billion laughs"), read into the typed task (no YAML
  tags, no coercion: ``trust_remote_code`` is true or false); every path in the typed task
  (``data``, ``corpus.paths``, ``output.dir``, a local ``model``/``embedder``) must stay inside
  the upload folder; ``tune.storage`` is the service's to choose; ``trust_remote_code`` only
  when the server allows it. Nothing from the upload is imported or run while it is checked.
- Then ``advisor.tasks.check_task``, and its error is shown with paths relative to the upload, as
  ``advise validate`` prints it when run from the task folder.
"""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from foundation.errors import AdviseError
from foundation.paths import display_path

TASK_FILE_MAX = 1 << 20
YAML_ALIASES_MAX = 100
SKIP = ("__MACOSX",)


class UploadError(Exception):
    """A submission refused before anything is checked: too big (413) or malformed (422)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Upload:
    """What ``check_upload`` returns: the checked task and where it is in the upload."""

    root: Path
    task_path: str  # task.yaml relative to root, as posix
    checked: object  # advisor.tasks.CheckedTask


def safe_name(name: str) -> str:
    """A relative posix path that stays inside the folder it is written to, or UploadError.

    >>> safe_name("data/./train.jsonl")
    'data/train.jsonl'
    >>> safe_name("../etc/passwd")
    Traceback (most recent call last):
    service.uploads.UploadError: ../etc/passwd: the path leaves the upload folder ('..')
    """
    if not name or "\x00" in name:
        raise UploadError(f"{name!r}: an empty or invalid file name")
    if "\\" in name:
        raise UploadError(f"{name}: backslashes are not allowed in file names (use /)")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UploadError(f"{name}: absolute paths are not allowed")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise UploadError(f"{name}: the path leaves the upload folder ('..')")
    if not parts or len(name) > 1000 or any(len(p) > 255 for p in parts):
        raise UploadError(f"{name}: not a usable file name")
    return "/".join(parts)


def _copy(src, target: Path, budget: list[int], name: str) -> None:
    """Copy a stream, counting bytes against the unpacked budget (zip headers may lie)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            while chunk := src.read(1 << 20):
                budget[0] -= len(chunk)
                if budget[0] < 0:
                    raise UploadError(f"{name}: the upload is larger than the server's unpacked limit", status=413)
                out.write(chunk)
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
        raise UploadError(f"{name}: clashes with another file or folder of the upload ({e.strerror})") from None


def save_files(files: list[tuple[str, object]], root: Path, limits) -> list[str]:
    """Form files (name, file object) into ``root``; a single ``.zip`` is unpacked instead."""
    if not files:
        raise UploadError("no files: upload task.yaml and its data files, or a zip of the task folder")
    if len(files) > limits.files:
        raise UploadError(f"{len(files)} files: more than the server's limit of {limits.files}", status=413)
    if len(files) == 1 and files[0][0].lower().endswith(".zip"):
        return unpack_zip(files[0][1], root, limits, files[0][0])
    budget = [int(limits.unpacked_mb * 2**20)]
    names = []
    for name, fileobj in files:
        rel = safe_name(name)
        if rel in names:
            raise UploadError(f"{rel}: uploaded twice")
        _copy(fileobj, root / rel, budget, rel)
        names.append(rel)
    return names


def unpack_zip(fileobj, root: Path, limits, shown: str = "upload.zip") -> list[str]:
    """A zip into ``root``: no links, no names that leave it, within the file and size limits."""
    try:
        with zipfile.ZipFile(fileobj) as z:
            infos = z.infolist()
            if len(infos) > limits.files:
                raise UploadError(f"{shown}: {len(infos)} entries, more than the server's limit of {limits.files}",
                                  status=413)
            if sum(i.file_size for i in infos) > limits.unpacked_mb * 2**20:
                raise UploadError(f"{shown}: unpacks to more than the server's limit of {limits.unpacked_mb:g} MB",
                                  status=413)
            budget = [int(limits.unpacked_mb * 2**20)]
            names = []
            for info in infos:
                if info.filename.split("/")[0] in SKIP:
                    continue
                rel = safe_name(info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UploadError(f"{shown}: {rel}: symbolic links are not allowed")
                if info.is_dir():
                    (root / rel).mkdir(parents=True, exist_ok=True)
                    continue
                with z.open(info) as src:
                    _copy(src, root / rel, budget, f"{shown}: {rel}")
                names.append(rel)
    except UploadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error,
            ValueError, OSError) as e:
        raise UploadError(f"{shown}: not a zip file this server can read ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return names


def find_task(root: Path, names: list[str], requested: str | None) -> str:
    """The task.yaml to run: the one named, the one at the top, or the only one."""
    if requested:
        rel = safe_name(requested)
        if rel not in names:
            raise UploadError(f"{rel}: not among the uploaded files")
        return rel
    if "task.yaml" in names:
        return "task.yaml"
    found = sorted(n for n in names if PurePosixPath(n).name in ("task.yaml", "task.yml"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise UploadError("no task.yaml in the upload (name another file with the `task` field)")
    raise UploadError(f"several task files ({', '.join(found[:5])}); name one with the `task` field")


def _count_aliases(text: str) -> int:
    import yaml

    return sum(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=yaml.SafeLoader))


def _outside(root: Path, base: Path, value: Path | str) -> bool:
    text = str(value)
    if text.startswith("~") or PurePosixPath(text).is_absolute() or re.match(r"^[A-Za-z]:", text):
        return True
    return not (base / text).resolve().is_relative_to(root.resolve())


def _model_path_problem(value: str) -> bool:
    from foundation.models import _EMBEDDER_ALIASES, _MODEL_ALIASES

    if value.lower() in _MODEL_ALIASES or value.lower() in _EMBEDDER_ALIASES:
        return False
    return bool(value.startswith(("~", "/")) or ".." in PurePosixPath(value).parts or re.match(r"^[A-Za-z]:", value))


def _task_paths(task) -> dict:
    """Every path the task reads or writes, by its key."""
    paths = {f"data.{k}": getattr(task.data, k) for k in ("train", "eval", "file") if getattr(task.data, k)}
    paths.update({f"corpus.paths.{i}": p for i, p in enumerate(task.corpus.paths)})
    paths["output.dir"] = task.output.dir
    return paths


def read_upload_task(root: Path, task_rel: str):
    """The upload's task.yaml as the typed, validated task, with nothing it names looked at yet:
    small, few YAML aliases (no "billion laughs"), YAML tags refused by the loader."""
    import yaml

    from foundation.taskfile import load_task

    path = root / task_rel
    if path.stat().st_size > TASK_FILE_MAX:
        raise AdviseError(f"larger than {TASK_FILE_MAX // 1024} KB", file=task_rel)
    try:
        if _count_aliases(path.read_text(encoding="utf-8")) > YAML_ALIASES_MAX:
            raise AdviseError(f"more than {YAML_ALIASES_MAX} YAML aliases", file=task_rel)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        pass  # load_task names the problem
    try:
        return load_task(path, check_paths=False)
    except AdviseError as e:
        raise AdviseError(relative_text(e.one_line(), root)) from None


def confine(root: Path, task, task_rel: str, allow_remote_code: bool) -> None:
    """Refuse a typed task whose paths leave the upload, or that asks for what the server does not
    allow. It looks at the validated values, never the raw YAML: `trust_remote_code: "yes"` or a
    `!!binary` path never reach this point as something a check here could miss."""
    base = (root / task_rel).parent
    inside = "must be a path inside the uploaded task folder (no absolute path, no '..' leaving it)"
    for where, value in _task_paths(task).items():
        if _outside(root, base, value):
            raise AdviseError(inside, file=task_rel, where=where)
    for key in ("model", "embedder"):
        value = getattr(task, key)
        if _model_path_problem(value) or ("/" in value and (base / value).exists() and _outside(root, base, value)):
            raise AdviseError("a local model must be a folder inside the uploaded task folder (no absolute path, "
                              "'~' or '..'); a hub id is `name` or `org/name`", file=task_rel, where=key)
    if task.tune.storage is not None:
        raise AdviseError("the service keeps every run's study in its own storage; remove tune.storage",
                          file=task_rel, where="tune.storage")
    if task.trust_remote_code and not allow_remote_code:
        raise AdviseError("this server does not run code from model repositories; its operator can allow it "
                          "with `advise serve --allow-remote-code`", file=task_rel, where="trust_remote_code")


def _check_resolved(root: Path, task, task_rel: str) -> None:
    """After loading: every path the task will read, symlinks followed, is inside ``root``."""
    real = root.resolve()
    for where, p in _task_paths(task).items():
        if not task.resolve(p).resolve().is_relative_to(real):
            raise AdviseError("must be a path inside the uploaded task folder", file=task_rel, where=where)


def relative_text(text: str, root: Path) -> str:
    """An error as the CLI prints it when run from the upload folder: no server paths in it."""
    prefixes = {str(root.resolve()), str(root), display_path(root)} - {".", ""}
    for prefix in sorted(prefixes, key=len, reverse=True):
        text = text.replace(prefix + "/", "")
    return text


def check_upload(root: Path, task_rel: str, *, allow_remote_code: bool) -> Upload:
    """The service's checks, then ``check_task``: an AdviseError whose text is the CLI's."""
    from advisor.tasks import check_task

    confine(root, read_upload_task(root, task_rel), task_rel, allow_remote_code)
    try:
        checked = check_task(root / task_rel, run_model_code=False)
        _check_resolved(root, checked.task, task_rel)
    except AdviseError as e:
        raise AdviseError(relative_text(e.one_line(), root)) from None
    return Upload(root=root, task_path=task_rel, checked=checked)


def make_bundle(root: Path, exclude: Path | None = None) -> tuple[bytes, str]:
    """The upload folder as a zip (without ``exclude``, the task's output folder), and its sha256."""
    buf = io.BytesIO()
    skip = exclude.resolve() if exclude is not None else None
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            if skip is not None and path.resolve().is_relative_to(skip):
                continue
            z.write(path, path.relative_to(root).as_posix())
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def unpack_bundle(content: bytes, root: Path, limits) -> None:
    """A stored bundle into a worker's job folder, with the same checks as an upload."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    unpack_zip(io.BytesIO(content), root, limits, "bundle")
