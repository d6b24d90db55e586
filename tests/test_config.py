
import pytest

from advisor.tasks import load_task
from foundation.config import TaskConfig
from foundation.errors import AdviseError
from conftest import REPO, write_task


def test_defaults_and_relative_paths(task_file):
    task = load_task(task_file)
    assert task.name == "tiny-task"
    assert task.resolve(task.data.train) == task_file.parent / "data/train.jsonl"
    assert task.run_dir == task_file.parent / "runs" / "tiny-task"
    assert task.generation.do_sample is False  # greedy by default
    assert task.baselines.finetune.enabled and task.baselines.rag.enabled


@pytest.mark.parametrize("extra, where, message", [
    ("baselines: {rag: {topk: 3}}", "baselines.rag.topk", "unknown key 'topk'"),
    ("generation: {max_new_tokens: lots}", "generation.max_new_tokens", "whole number"),
    ("metric: {name: bleu}", "metric", "unknown metric 'bleu'"),
    ("prompt: {template: 'no placeholder'}", "prompt.template", "{input}"),
])
def test_errors_name_file_and_key_path(tmp_path, extra, where, message):
    path = write_task(tmp_path / "t")
    text = path.read_text()
    # Replace the section if the fixture already has it, so YAML has no duplicate keys.
    section = extra.split(":")[0]
    lines = [l for l in text.splitlines() if not l.startswith(section + ":")]
    if section == "baselines":
        lines = [l for l in lines if not l.startswith("  ")]
    path.write_text("\n".join(lines) + "\n" + extra + "\n")
    with pytest.raises(AdviseError) as err:
        load_task(path)
    line = str(err.value)
    assert line.startswith(str(path)) and f": {where}: " in line and message in line


def test_schema_has_a_description_for_every_top_level_section():
    for name, field in TaskConfig.model_fields.items():
        if name == "source_path":
            continue
        assert field.annotation is not None, name


EXAMPLES = sorted((REPO / "examples").glob("*/task.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_every_example_task_loads_with_its_data(path):
    from foundation.corpus import load_corpus
    from foundation.data import load_splits

    task = load_task(path)
    splits = load_splits(task)
    assert splits.eval and splits.train
    load_corpus(task)


def test_scaffold_validates(tmp_path):
    from foundation.corpus import load_corpus
    from foundation.data import load_splits
    from advisor.scaffold import write_scaffold

    write_scaffold(tmp_path / "new")
    task = load_task(tmp_path / "new" / "task.yaml")
    assert task.name == "new"
    assert len(load_splits(task).eval) >= 5 and load_corpus(task)
    with pytest.raises(AdviseError, match="already exists"):
        write_scaffold(tmp_path / "new")


def test_yaml_merge_keys_and_anchors_load_and_written_keys_override(tmp_path):
    from conftest import write_task

    path = write_task(tmp_path / "t")
    path.write_text(path.read_text().replace("  finetune: {max_steps: 3, batch_size: 4, max_seq_length: 96}",
                                             "  finetune: &pilot {max_steps: 3, batch_size: 4, max_seq_length: 96}\n"
                                             "tune:\n  <<: {max_steps: 7, n_trials: 2}\n  max_steps: 19"))
    task = load_task(path)
    assert (task.tune.max_steps, task.tune.n_trials, task.baselines.finetune.max_steps) == (19, 2, 3)
