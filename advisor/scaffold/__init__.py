"""`advise init`: a commented task.yaml and tiny data files to start from."""
from __future__ import annotations

from pathlib import Path

from foundation.errors import AdviseError

_HERE = Path(__file__).parent
FILES = ("task.yaml", "data/train.jsonl", "data/eval.jsonl", "docs/handbook.md", "task.schema.json")


def write_scaffold(folder: Path) -> list[Path]:
    folder = Path(folder)
    existing = [folder / f for f in FILES if (folder / f).exists()]
    if existing:
        raise AdviseError("already exists; not overwriting", file=existing[0])
    written = []
    for name in FILES:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == "task.schema.json":  # what the task.yaml's first line names, for editors
            from advisor.schema import schema_text

            text = schema_text()
        else:
            text = (_HERE / name.replace("task.yaml", "task.yaml.txt")).read_text(encoding="utf-8")
        if name == "task.yaml":
            text = text.replace("name: my-task", f"name: {_safe_name(folder)}")
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def _safe_name(folder: Path) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-.") or "my-task"
    return name if name[0].isalnum() else f"task-{name}"
