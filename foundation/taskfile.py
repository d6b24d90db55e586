"""Reading a task.yaml: strict YAML, one typed model, every error one line naming the file and key.

>>> load_task("missing.yaml")
Traceback (most recent call last):
foundation.errors.AdviseError: missing.yaml: file not found
"""
from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from foundation.config import TaskConfig
from foundation.errors import AdviseError
from foundation.paths import check_regular_file, check_writable_dir, display_path, read_text


def _yaml_type(value) -> str:
    return {dict: "a mapping", list: "a list", str: f"the text {value!r}", int: f"the number {value!r}",
            float: f"the number {value!r}", bool: f"{str(value).lower()}", type(None): "nothing"}.get(
        type(value), type(value).__name__)


def _key_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("__root__",)) or "(top level)"


def _format_error(err: dict) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown key '{err['loc'][-1]}'"
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys, got {_yaml_type(err.get('input'))}"
    if kind == "path_type":
        return f"expected a file path, got {_yaml_type(err.get('input'))}"
    if kind == "string_pattern_mismatch" and err["loc"] == ("name",):
        return "use letters, digits, '.', '_' and '-' only, starting with a letter or digit"
    if kind == "list_type":
        return f"expected a list, got {_yaml_type(err.get('input'))}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {_yaml_type(err.get('input'))}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {_yaml_type(err.get('input'))}"
    if kind == "finite_number":
        return f"expected a finite number, got {err.get('input')}"
    msg = err.get("msg", "invalid value")
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


class _DuplicateKey(Exception):
    def __init__(self, key, line, first):
        self.key, self.line, self.first = key, line, first


class _BadKey(Exception):
    def __init__(self, message, line):
        self.message, self.line = message, line


MAX_TASK_BYTES = 1_000_000  # a task.yaml is a page of settings; a megabyte of it is a wrong file


def _strict_loader():
    """A SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        # `<<: *defaults` merge keys are YAML's own; a key written next to them overrides the
        # merged value (not a duplicate), so only the keys written here are checked.
        merge = "tag:yaml.org,2002:merge"
        own = [(k, v) for k, v in node.value if k.tag != merge]
        if len(own) != len(node.value):
            loader.flatten_mapping(node)
        seen = {}
        for key_node, _ in own:
            key = loader.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise _BadKey(f"a key must be a plain name, not {_yaml_type(key)}", line)
            if key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)

    # A task file holds text, numbers, true/false, nothing, lists and mappings. Other tags turn
    # into values no key expects (`!!binary` gives bytes, which used to slip past checks that
    # looked for text); an unknown `!tag` is refused by PyYAML already, with its own words.
    def refuse_tag(loader, node):
        shown = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise _BadKey(f"YAML tag '{shown}' is not allowed in a task file; write plain text, numbers, true/false, "
                      "lists and mappings", node.start_mark.line + 1)

    for tag in ("binary", "timestamp", "omap", "pairs", "set"):
        Loader.add_constructor(f"tag:yaml.org,2002:{tag}", refuse_tag)
    Loader.add_constructor(None, refuse_tag)
    # YAML 1.1 reads an unquoted 2024-01-01 as a date; here it stays the text it looks like.
    timestamp = "tag:yaml.org,2002:timestamp"
    Loader.yaml_implicit_resolvers = {first: [r for r in resolvers if r[0] != timestamp]
                                      for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return Loader


_StrictLoader = None


def load_task(path: str | Path, *, check_paths: bool = True) -> TaskConfig:
    """Read and validate a task.yaml; every error is an AdviseError naming the file and key.
    Without ``check_paths`` nothing the task names is looked at on disk (the service confines the
    typed paths to an upload first, so that an error never says what exists outside it)."""
    path = Path(path)
    shown = str(path)
    raw = _read_yaml(path, shown)
    if raw is None:
        raise AdviseError("the file is empty", file=shown)
    if not isinstance(raw, dict):
        raise AdviseError(f"the top level must be a mapping of keys, not {_yaml_type(raw)}", file=shown)
    if "source_path" in raw:
        raise AdviseError("unknown key 'source_path'", file=shown, where="(top level)")
    try:
        task = TaskConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise AdviseError(_format_error(first), file=shown, where=_key_path(first["loc"])) from None
    except RecursionError:
        raise AdviseError("the settings are nested too deeply to be a task", file=shown) from None
    task.source_path = path.resolve()
    if check_paths:
        _check_paths(task, shown)
    return task


def _read_yaml(path: Path, shown: str):
    import yaml

    global _StrictLoader
    if _StrictLoader is None:
        _StrictLoader = _strict_loader()
    if path.is_dir():
        raise AdviseError("is a folder; give the task.yaml inside it", file=shown)
    check_regular_file(path, shown)
    if path.stat().st_size > MAX_TASK_BYTES:
        raise AdviseError(f"is {path.stat().st_size:,} bytes; a task.yaml is a page of settings", file=shown)
    text = read_text(path, shown)
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKey as e:
        raise AdviseError(f"duplicate key '{e.key}' (first on line {e.first})", file=shown, where=e.line) from None
    except _BadKey as e:
        raise AdviseError(e.message, file=shown, where=e.line) from None
    except yaml.reader.ReaderError as e:  # a control character or NUL byte
        line = text[: e.position].count("\n") + 1
        raise AdviseError(f"character {e.character!r} is not allowed in YAML", file=shown, where=line) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or "malformed YAML"
        raise AdviseError(f"malformed YAML: {problem}", file=shown, where=(mark.line + 1) if mark else None) from None
    except RecursionError:
        raise AdviseError("malformed YAML: nested too deeply", file=shown) from None


def _check_paths(task: TaskConfig, shown: str) -> None:
    """Every path the task names: data files are regular files, model and embedder folders look
    loadable, corpus paths exist, and the run folder can be made."""
    from foundation.models import resolve_embedder, resolve_model

    for key in ("train", "eval", "file"):
        value = getattr(task.data, key)
        if value is not None:
            full = task.resolve(value)
            check_regular_file(full, display_path(full), task_file=shown, where=f"data.{key}")
    for key, resolve in (("model", resolve_model), ("embedder", resolve_embedder)):
        try:
            resolve(getattr(task, key), task.base_dir)
        except AdviseError as e:
            raise AdviseError(e.message, file=shown, where=key) from None
    for i, p in enumerate(task.corpus.paths):
        full = task.resolve(p)
        try:
            exists = full.exists()
        except OSError as e:
            raise AdviseError(f"cannot read {display_path(full)}: {e.strerror}", file=shown,
                              where=f"corpus.paths.{i}") from None
        if not exists:
            raise AdviseError(f"not found: {display_path(full)}", file=shown, where=f"corpus.paths.{i}")
        if not full.is_dir():
            check_regular_file(full, display_path(full), task_file=shown, where=f"corpus.paths.{i}")
    check_writable_dir(task.run_dir, task_file=shown, where="output.dir")
