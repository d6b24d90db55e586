"""No code from an upload runs while the service checks it, whatever the task.yaml says.

Each class of hostile upload: a `trust_remote_code` that is not the boolean true (1, "true",
yes, "yes"), a model or embedder path hidden behind a YAML tag (`!!binary`), a model folder whose
config.json names code of its own (`auto_map`), an embedder folder whose modules.json names a
class outside sentence-transformers. The model folder's code writes a marker file when imported,
so a test fails if it ever runs. The HTTP cases go to a real ``advise serve`` on loopback."""
from __future__ import annotations

import base64
import json
import subprocess

import pytest
import requests

from conftest import write_task
from conftest_service import ADVISE, env, serve, submit_zip
from foundation.errors import AdviseError
from service.uploads import check_upload, read_upload_task

EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import LlamaConfig
class EvilConfig(LlamaConfig):
    model_type = "llama"
"""


def hostile_model(folder, marker) -> None:
    """A model folder whose config.json asks transformers to import its own configuration code."""
    from foundation.models import tiny_config

    folder.mkdir(parents=True)
    config = tiny_config().to_dict()
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_evil.py").write_text(EVIL.format(marker=str(marker)))


def upload_with(tmp_path, extra: str, model: str = "tiny-random"):
    root = tmp_path / "up"
    task = write_task(root, model=model, extra=extra)
    hostile_model(root / "evil", tmp_path / "marker")
    return root, task


@pytest.mark.parametrize("value", ["1", "'true'", "yes", "'yes'", "on", "1.0"])
def test_trust_remote_code_that_is_not_the_boolean_true_is_refused_and_runs_nothing(value, tmp_path):
    root, _ = upload_with(tmp_path, f"trust_remote_code: {value}", model="evil")
    with pytest.raises(AdviseError) as e:
        check_upload(root, "task.yaml", allow_remote_code=False)
    assert e.value.one_line().startswith("task.yaml: trust_remote_code: "), e.value.one_line()
    assert not (tmp_path / "marker").exists()


def test_a_model_folder_with_its_own_code_is_refused_without_trust(tmp_path):
    root, _ = upload_with(tmp_path, "", model="evil")
    with pytest.raises(AdviseError, match=r"task.yaml: model: the model folder names code of its own \(auto_map"):
        check_upload(root, "task.yaml", allow_remote_code=True)
    assert not (tmp_path / "marker").exists()


def test_a_server_that_allows_remote_code_still_runs_none_while_checking(tmp_path):
    root, _ = upload_with(tmp_path, "trust_remote_code: true", model="evil")
    upload = check_upload(root, "task.yaml", allow_remote_code=True)
    assert upload.checked.task.trust_remote_code
    assert any("not run while the task is checked" in w for w in upload.checked.warnings)
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("key", ["model", "embedder"])
def test_a_path_behind_a_yaml_tag_is_refused_by_the_loader(key, tmp_path):
    root = tmp_path / "up"
    task = write_task(root)
    hidden = base64.b64encode(str(tmp_path).encode()).decode()
    text = task.read_text().replace("model: tiny-random\n", "")
    task.write_text(text + f"\n{key}: !!binary {hidden}\n")
    with pytest.raises(AdviseError) as e:
        read_upload_task(root, "task.yaml")
    line = e.value.one_line()
    assert "YAML tag '!!binary' is not allowed" in line and line.startswith("task.yaml: line "), line
    assert str(tmp_path) not in line


def test_an_embedder_naming_foreign_modules_is_refused(tmp_path):
    root = tmp_path / "up"
    write_task(root, extra="embedder: emb")
    (root / "emb").mkdir()
    (root / "emb/config.json").write_text("{}")
    (root / "emb/modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                         "type": "torch.serialization"}]))
    with pytest.raises(AdviseError, match="embedder: .*modules outside sentence-transformers"):
        check_upload(root, "task.yaml", allow_remote_code=False)


def test_the_cli_names_the_model_key_for_a_folder_with_its_own_code(tmp_path):
    root, task = upload_with(tmp_path, "", model="evil")
    out = subprocess.run([*ADVISE, "validate", str(task)], env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: {task}: model: the model folder names code of its own (auto_map: configuration_evil.EvilConfig); "
        "advise runs it only with trust_remote_code: true"], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "marker").exists()


@pytest.mark.service
def test_hostile_uploads_to_a_real_server_run_no_code_and_show_no_server_path(tmp_path):
    cases = {"trust_remote_code: 1": "trust_remote_code", "trust_remote_code: 'true'": "trust_remote_code",
             "trust_remote_code: yes": "trust_remote_code",
             f"embedder: !!binary {base64.b64encode(str(tmp_path).encode()).decode()}": "line"}
    with serve(tmp_path / "data") as url:
        for i, (extra, where) in enumerate(cases.items()):
            root = tmp_path / f"up{i}"
            write_task(root, model="evil", extra=extra)
            hostile_model(root / "evil", tmp_path / "marker")
            r = submit_zip(url, root)
            assert r.status_code == 422, (extra, r.status_code, r.text)
            detail = r.json()["detail"]
            assert detail.startswith("task.yaml: ") and where in detail, (extra, detail)
            assert str(tmp_path) not in detail, detail
        runs = requests.get(url + "/api/runs", timeout=10).json()
    assert not runs or all(run.get("status") != "queued" for run in runs)
    assert not (tmp_path / "marker").exists()
