"""task.yaml as a JSON Schema (for editors) and as the reference page docs/task-yaml.md.

Both come from the pydantic models in ``foundation.config``, completed with what only the
registries know (metric names, PEFT methods, training objectives, ``tune.search`` keys), so
neither can drift from what ``advise validate`` checks. ``advise schema --write docs``
regenerates both files; ``tests/test_docs.py`` fails when a committed one is out of date.
"""
from __future__ import annotations

import json
from pathlib import Path

SCHEMA_FILE = "task.schema.json"
REFERENCE_FILE = "task-yaml.md"
REGENERATE = "advise schema --write docs"
SCHEMA_LINE = "# yaml-language-server: $schema="

# Where each section is explained at length (pages under docs/); the reference links to them.
GUIDES = {"": "usage.md", "data": "data-formats.md", "corpus": "data-formats.md", "prompt": "candidates.md",
          "metric": "verdict.md", "generation": "candidates.md", "constraints": "verdict.md",
          "baselines": "candidates.md", "verdict": "verdict.md", "tune": "tuner.md", "output": "usage.md"}


def json_schema() -> dict:
    """The JSON Schema of a task.yaml: pydantic's, with the registries' names as enums.

    >>> schema = json_schema()
    >>> schema["additionalProperties"], "name" in schema["required"]
    (False, True)
    """
    from foundation.config import TaskConfig
    from foundation.metrics import METRICS
    from training.methods import METHODS
    from training.objectives import OBJECTIVES

    schema = TaskConfig.model_json_schema()
    schema["properties"].pop("source_path", None)  # set by load_task, not by the user
    _factory_defaults(TaskConfig, schema, schema["$defs"])
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "advise task.yaml",
              **{k: v for k, v in schema.items() if k != "title"}}
    defs = schema["$defs"]
    defs["MetricConfig"]["properties"]["name"]["enum"] = list(METRICS)
    tune = defs["TuneConfig"]["properties"]
    _nullable(tune["methods"])["items"]["enum"] = list(METHODS)
    _nullable(tune["objectives"])["items"]["enum"] = list(OBJECTIVES)
    defs["FinetuneBaselineConfig"]["properties"]["objective"]["enum"] = ["auto", *OBJECTIVES]
    search = tune["search"]
    search["properties"] = {key: {"$ref": search["additionalProperties"]["$ref"], **about}
                            for key, about in search_keys().items()}
    search["additionalProperties"] = False
    return schema


def _factory_defaults(model, node: dict, defs: dict) -> None:
    """Pydantic leaves out a ``default_factory``'s value; put it back where it is a plain value
    (``corpus.paths: []``), not a whole section, in ``model`` and every model under it."""
    import typing

    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        prop = node["properties"].get(name)
        if prop is None:
            continue
        if field.default_factory is not None and "default" not in prop:
            value = field.default_factory()
            if not isinstance(value, BaseModel):
                prop["default"] = value
        stack = [field.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel) and kind.__name__ in defs:
                _factory_defaults(kind, defs[kind.__name__], defs)
            stack += typing.get_args(kind)


def _nullable(prop: dict) -> dict:
    """The non-null branch of an ``X | None`` property."""
    return next(p for p in prop.get("anyOf", [prop]) if p.get("type") != "null")


def search_keys() -> dict[str, dict]:
    """Every key ``tune.search`` takes, as a schema property: the shared and per-method names,
    then ``<method>.<name>`` and ``<objective>.<name>``, each with its default range."""
    from training.methods import HYPERPARAMETERS, METHODS
    from training.objectives import OBJECTIVES
    from training.space import CATALOGUE, SHARED

    owners = (*METHODS.values(), *OBJECTIVES.values())
    plain = {hp.name: hp for hp in (*CATALOGUE.values(), *SHARED)}
    for owner in owners:  # an objective's name (beta) also stands for every objective that takes it
        plain.update({hp.name: hp for hp in owner.hyperparameters if hp.name not in plain})
    names = dict.fromkeys((*HYPERPARAMETERS, *plain))
    keys = {name: {"description": f"{plain[name].help or name}; every method or objective that takes it, each "
                                  "within its own range"} for name in names}
    keys.update({hp.name: _search_key(hp) for hp in SHARED})
    for owner in owners:
        keys.update({f"{owner.name}.{hp.name}": _search_key(hp) for hp in owner.hyperparameters})
    return keys


def _search_key(hp) -> dict:
    """A hyperparameter's default range (or choices) and the limits an override must keep."""
    if hp.choices:
        default = {"choices": list(hp.choices)}
    else:
        default = {"low": hp.low, "high": hp.high}
    low, high = hp.limits
    limits = (f" (log scale)" if hp.log else "") + (f"; within {low:g} to {high:g}" if low is not None else "")
    return {"description": f"{hp.help or hp.name}{limits}", "default": default}


def markdown() -> str:
    """docs/task-yaml.md: one table per section, every key with its type, default, range and description."""
    schema = json_schema()
    out = [
        "# task.yaml reference", "",
        f"<!-- Generated from foundation/config.py and the tuner's registries by `{REGENERATE}`; do not edit. -->",
        "",
        "Every section is a strict typed model: an unknown key, a wrong type or a value out of range is an",
        "error naming the file and the key path (`task.yaml: baselines.rag.topk: unknown key 'topk'`).",
        "Paths are relative to the task file. Only `name` and `data` are required.", "",
        f"Editors that read JSON Schema complete these keys and flag typos as you type: [{SCHEMA_FILE}]({SCHEMA_FILE})",
        f"(`advise schema` prints it; `advise init` writes it beside the new task.yaml, whose first line",
        f"`{SCHEMA_LINE}{SCHEMA_FILE}` names it).", "",
    ]
    for path, section in _sections(schema, schema, ""):
        out += _section_table(path, section)
    return "\n".join(out).rstrip() + "\n"


def _sections(schema: dict, node: dict, path: str):
    """(key path, schema object) for the top level and every nested section, depth first."""
    yield path, node
    for key, prop in node.get("properties", {}).items():
        target = _section_of(schema, prop)
        if target is not None:
            listed = "[]" if any(b.get("type") == "array" for b in prop.get("anyOf", [prop])) else ""
            yield from _sections(schema, {**target, "description": prop.get("description", "")},
                                 f"{path}.{key}{listed}".lstrip("."))
        elif prop.get("properties"):  # a mapping with named keys (tune.search): each holds the same section
            yield f"{path}.{key}", prop
            first = _section_of(schema, next(iter(prop["properties"].values())))
            if first is not None:
                yield from _sections(schema, first, f"{path}.{key}.<key>")


def _section_of(schema: dict, prop: dict) -> dict | None:
    """The section a property holds (or a list of), or None for a plain value."""
    for branch in prop.get("anyOf", [prop]):
        ref = branch.get("$ref") or branch.get("items", {}).get("$ref")
        if ref:
            return schema["$defs"][ref.rsplit("/", 1)[1]]
    return None


def _section_table(path: str, section: dict) -> list[str]:
    title = f"`{path}`" if path else "Top level"
    lines = [f"## {title}", ""]
    guide = GUIDES.get(path.split(".")[0])
    about = section.get("description", "").strip()
    if about:
        lines += [" ".join(about.split()) + (f" More in [{guide}]({guide})." if guide else ""), ""]
    lines += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    required = set(section.get("required", ()))
    for key, prop in section.get("properties", {}).items():
        full = f"{path}.{key}" if path else key
        default = "required" if key in required else _default(prop)
        lines.append("| " + " | ".join(_cell(c) for c in (f"`{full}`", _type(prop), default, _allowed(prop),
                                                             prop.get("description", ""))) + " |")
    return lines + [""]


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, and outside code spans no < or > that would read as HTML."""
    parts = " ".join(str(text).split()).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


def _type(prop: dict) -> str:
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    names = []
    for b in branches:
        if "$ref" in b:
            names.append("section")
        elif b.get("type") == "array":
            names.append(f"list of {_type(b.get('items', {}))}")
        elif b.get("type") == "object":
            names.append("mapping")
        else:
            names.append("path" if b.get("format") == "path" else b.get("type", "any"))
    return " or ".join(dict.fromkeys(names))


def _default(prop: dict) -> str:
    if "default" not in prop:
        return "—"  # a section: its keys have the defaults
    value = prop["default"]
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)) or (isinstance(value, str) and "\n" not in value):
        return f"`{value}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _allowed(prop: dict) -> str:
    parts = []
    for b in prop.get("anyOf", [prop]):
        items = b.get("items", {})
        enum = b.get("enum") or items.get("enum")
        if enum:
            parts.append(", ".join(f"`{v}`" for v in enum))
        for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
            if key in b:
                parts.append(f"{sign} {b[key]:g}" if isinstance(b[key], float) else f"{sign} {b[key]}")
        if "maxLength" in b:
            parts.append(f"at most {b['maxLength']} characters")
        if "pattern" in b:
            parts.append(f"matches `{b['pattern']}`")
    return ", ".join(parts)


def write(folder: Path) -> list[Path]:
    """Write the JSON Schema and the reference page into ``folder`` (``docs/``)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {folder / SCHEMA_FILE: schema_text(), folder / REFERENCE_FILE: markdown()}
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
