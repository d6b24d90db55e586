"""The docs: a short README, a docs/ site that builds with no broken link, and the task.yaml
reference and JSON Schema generated from the typed models, committed, and up to date."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from conftest import REPO, write_task

from advisor import schema
from advisor.tasks import load_task
from foundation.errors import AdviseError

ADVISE = [sys.executable, "-m", "commands.cli"]
DOCS = REPO / "docs"
EXAMPLES = sorted(REPO.glob("examples/*/task.yaml"))
STALE = (f"is out of date with foundation/config.py or the tuner's registries: regenerate it with "
         f"`{schema.REGENERATE}` and commit the result")


def test_the_readme_is_short_and_keeps_the_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "README.md: at most 200 lines; put the details in docs/"
    assert "scripts/demo.sh" in text and "scripts/test.sh" in text  # .ci/run calls scripts/test.sh


@pytest.mark.parametrize("name, generate", [(schema.SCHEMA_FILE, schema.schema_text),
                                            (schema.REFERENCE_FILE, schema.markdown)])
def test_the_committed_schema_and_reference_are_what_the_models_generate(name, generate):
    committed = DOCS / name
    assert committed.is_file(), f"docs/{name} is missing: {STALE}"
    assert committed.read_text(encoding="utf-8") == generate(), f"docs/{name} {STALE}"


def test_every_key_has_a_type_and_a_description():
    generated = schema.json_schema()
    sections = [("", generated), *generated["$defs"].items()]
    missing = [f"{name}.{key}".lstrip(".") for name, section in sections
               for key, prop in section.get("properties", {}).items() if not prop.get("description")]
    assert not missing, f"give these Field(...)s a description= (the reference shows it): {missing}"
    reference = (DOCS / schema.REFERENCE_FILE).read_text(encoding="utf-8")
    for key in ("`data.train`", "`baselines.rag.top_k`", "`tune.search.lora.rank`", "`tune.pruner`"):
        assert key in reference


def _validator():
    return jsonschema_rs.validator_for(json.loads((DOCS / schema.SCHEMA_FILE).read_text(encoding="utf-8")))


@pytest.mark.parametrize("task_file", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_the_schema_accepts_every_example_and_its_first_line_names_it(task_file):
    first = task_file.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(schema.SCHEMA_LINE), f"{task_file}: first line must name the schema"
    assert (task_file.parent / first.removeprefix(schema.SCHEMA_LINE)).resolve() == (DOCS / schema.SCHEMA_FILE)
    errors = [f"{e.instance_path}: {e.message}" for e in _validator().iter_errors(yaml.safe_load(task_file.read_text()))]
    assert errors == []


def test_the_readme_task_is_valid():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block.startswith(schema.SCHEMA_LINE)
    assert list(_validator().iter_errors(yaml.safe_load(block))) == []


def test_advise_init_writes_the_schema_its_task_yaml_names(tmp_path):
    proc = subprocess.run([*ADVISE, "init", "new"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    task = tmp_path / "new" / "task.yaml"
    first = task.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"{schema.SCHEMA_LINE}{schema.SCHEMA_FILE}"
    written = (tmp_path / "new" / schema.SCHEMA_FILE).read_text(encoding="utf-8")
    assert written == (DOCS / schema.SCHEMA_FILE).read_text(encoding="utf-8")
    assert list(_validator().iter_errors(yaml.safe_load(task.read_text()))) == []


# Each mistake: the JSON Schema flags it in the editor, and advise refuses it with the key path.
MISTAKES = [
    ({"topk": 3}, "baselines.rag", "baselines.rag.topk"),
    ({"rnak": {"low": 4}}, "tune.search", "tune.search.rnak"),
    ({"colour": "blue"}, "", "colour"),
    ({"max_steps": "many"}, "baselines.finetune", "baselines.finetune.max_steps"),
    ({"top_k": 0}, "baselines.rag", "baselines.rag.top_k"),
    ({"name": "bleu"}, "metric", "metric: unknown metric 'bleu'"),
    ({"methods": ["loar"]}, "tune", "tune.methods"),
    ({"lora.beta": {"low": 0.1}}, "tune.search", "tune.search.lora.beta"),
    ({"knowledge_changes": "hourly"}, "constraints", "constraints.knowledge_changes"),
]


@pytest.mark.parametrize("change, section, key", MISTAKES, ids=[f"{m[1]}.{next(iter(m[0]))}" for m in MISTAKES])
def test_the_schema_and_advise_refuse_the_same_mistake(tmp_path, change, section, key):
    path = write_task(tmp_path / "t")
    task = yaml.safe_load(path.read_text(encoding="utf-8"))
    target = task
    for part in filter(None, section.split(".")):
        target = target.setdefault(part, {})
    target.update(change)
    assert list(_validator().iter_errors(task)), f"the schema accepts {key}"
    path.write_text(yaml.safe_dump(task), encoding="utf-8")
    with pytest.raises(AdviseError) as caught:
        load_task(path)
    assert key in caught.value.one_line()


def test_the_schema_and_advise_accept_the_same_search_keys(tmp_path):
    path = write_task(tmp_path / "t", extra="tune:\n  search:\n    beta: {low: 0.05, high: 0.2}\n"
                      "    dpo.beta: {low: 0.05}\n    lora.rank: {choices: [8, 16]}\n    learning_rate: {high: 0.001}\n")
    task = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert list(_validator().iter_errors(task)) == []
    assert set(load_task(path).tune.search) == {"beta", "dpo.beta", "lora.rank", "learning_rate"}


def test_advise_schema_prints_the_schema_and_the_reference():
    proc = subprocess.run([*ADVISE, "schema"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == schema.schema_text()
    proc = subprocess.run([*ADVISE, "schema", "--markdown"], capture_output=True, text=True, timeout=120)
    assert proc.stdout == schema.markdown()


def test_the_docs_site_builds_with_no_broken_link(tmp_path):
    import os

    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "site" / "task-yaml" / "index.html").is_file()


def test_every_page_is_in_the_navigation():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert [p for p in pages if p not in nav] == [], "add each docs/ page to the nav: in mkdocs.yml"
