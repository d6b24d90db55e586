"""The service's security rules: uploads that try to leave their folder, tasks that point outside
it or ask for what the server does not allow, tokens on a non-loopback bind, cross-site requests,
upload size limits. The upload rules are checked on ``service.uploads`` directly (fast) and the
HTTP ones against a real ``advise serve``."""
from __future__ import annotations

import io
import os
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests

from conftest import write_task
from conftest_service import ADVISE, env, free_port, serve, submit_zip, zip_folder
from foundation.errors import AdviseError
from service.settings import Limits, check_bind, make_settings
from service.uploads import UploadError, check_upload, find_task, read_upload_task, safe_name, save_files, unpack_zip

LIMITS = Limits()


def _zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/passwd", "C:/x.txt", "a\\..\\b",
                                  "", "a\x00b"])
def test_zip_slip_and_traversal_names_are_refused(name, tmp_path):
    if name and "\x00" not in name:  # a zip cannot carry these two (zipfile cuts names at NUL)
        with pytest.raises(UploadError):
            unpack_zip(_zip({"task.yaml": b"name: x", name: b"x"}), tmp_path / "up", LIMITS)
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(UploadError):
        save_files([("task.yaml", io.BytesIO(b"x")), (name, io.BytesIO(b"x"))], tmp_path / "files", LIMITS)


def test_a_symlink_in_a_zip_is_refused(tmp_path):
    with pytest.raises(UploadError, match="symbolic links"):
        unpack_zip(_zip({"task.yaml": b"name: x"}, {"data/train.jsonl": "/etc/passwd"}), tmp_path / "up", LIMITS)


def test_size_and_count_limits(tmp_path):
    small = Limits(files=3, unpacked_mb=0.01)
    with pytest.raises(UploadError, match="limit") as e:
        unpack_zip(_zip({"big.txt": b"0" * 20_000}), tmp_path / "a", small)
    assert e.value.status == 413
    with pytest.raises(UploadError, match="limit"):
        unpack_zip(_zip({f"f{i}": b"" for i in range(5)}), tmp_path / "b", small)
    with pytest.raises(UploadError, match="limit"):
        save_files([("a", io.BytesIO(b"0" * 20_000))], tmp_path / "c", small)
    with pytest.raises(UploadError, match="not a zip"):
        unpack_zip(io.BytesIO(b"PK\x03\x04 not really"), tmp_path / "d", LIMITS)


def test_a_file_and_a_folder_of_one_name_are_refused(tmp_path):
    with pytest.raises(UploadError, match="clashes"):
        save_files([("a", io.BytesIO(b"x")), ("a/b", io.BytesIO(b"y"))], tmp_path / "one", LIMITS)
    with pytest.raises(UploadError, match="clashes"):
        unpack_zip(_zip({"a/b": b"y", "a": b"x"}), tmp_path / "two", LIMITS)


def test_names_are_normalised_and_the_task_file_found():
    assert safe_name("./data//train.jsonl") == "data/train.jsonl"
    assert find_task(Path("."), ["t/task.yaml", "t/data/a.jsonl"], None) == "t/task.yaml"
    with pytest.raises(UploadError, match="several"):
        find_task(Path("."), ["a/task.yaml", "b/task.yaml"], None)
    assert find_task(Path("."), ["a/task.yaml", "b/task.yaml"], "b/task.yaml") == "b/task.yaml"


@pytest.mark.parametrize("edit, where", [
    (("train: data/train.jsonl", "train: ../../../../etc/passwd"), "data.train"),
    (("train: data/train.jsonl", "train: /etc/passwd"), "data.train"),
    (("eval: data/eval.jsonl", "eval: ~/eval.jsonl"), "data.eval"),
    (("paths: [docs/]", "paths: [docs/, ../other-user/]"), "corpus.paths.1"),
    (("dir: runs", "dir: /tmp/elsewhere"), "output.dir"),
    (("dir: runs", "dir: ../../runs"), "output.dir"),
    (("model: tiny-random", "model: /models/secret"), "model"),
    (("model: tiny-random", "model: ../models/x"), "model"),
    (("model: tiny-random", "model: ~/models/x"), "model"),
    (("seed: 0", "seed: 0\ntrust_remote_code: true"), "trust_remote_code"),
    (("seed: 0", "seed: 0\ntune: {storage: 'sqlite:////tmp/x.db'}"), "tune.storage"),
])
def test_task_paths_stay_inside_the_upload(edit, where, tmp_path):
    task = write_task(tmp_path / "up")
    task.write_text(task.read_text().replace(*edit))
    with pytest.raises(AdviseError) as e:
        check_upload(tmp_path / "up", "task.yaml", allow_remote_code=False)
    assert e.value.one_line().startswith(f"task.yaml: {where}: "), e.value.one_line()
    assert "/etc/passwd" not in e.value.one_line().split(": ", 2)[2]


def test_remote_code_is_allowed_only_when_the_server_says_so(tmp_path):
    task = write_task(tmp_path / "up")
    task.write_text(task.read_text().replace("seed: 0", "seed: 0\ntrust_remote_code: true"))
    assert check_upload(tmp_path / "up", "task.yaml", allow_remote_code=True).checked.task.trust_remote_code


def test_a_symlink_made_inside_the_folder_cannot_leave_it(tmp_path):
    task = write_task(tmp_path / "up")
    (tmp_path / "outside.jsonl").write_text((task.parent / "data/train.jsonl").read_text())
    (task.parent / "data/train.jsonl").unlink()
    os.symlink(tmp_path / "outside.jsonl", task.parent / "data/train.jsonl")
    with pytest.raises(AdviseError, match="data.train: must be a path inside"):
        check_upload(tmp_path / "up", "task.yaml", allow_remote_code=False)


def test_yaml_alias_bombs_are_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(9))}]" for i in range(1, 13)]
    (tmp_path / "task.yaml").write_text("\n".join(lines) + "\nname: t\n")
    with pytest.raises(AdviseError, match="aliases"):
        read_upload_task(tmp_path, "task.yaml")


def test_binding_beyond_loopback_needs_tokens(tmp_path):
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(make_settings(host=host, data_dir=tmp_path))
    with pytest.raises(AdviseError, match="refusing to listen on 0.0.0.0"):
        check_bind(make_settings(host="0.0.0.0", data_dir=tmp_path))
    tokens = tmp_path / "tokens"
    tokens.write_text("read short abc\n")
    with pytest.raises(AdviseError, match="line 1: the token is shorter"):
        make_settings(host="0.0.0.0", data_dir=tmp_path, tokens=tokens)


@pytest.mark.service
def test_a_non_loopback_server_refuses_to_start_without_a_token(tmp_path):
    proc = subprocess.run([*ADVISE, "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir",
                           str(tmp_path / "data")], env=env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --host: refusing to listen on 0.0.0.0")
    assert "Traceback" not in proc.stderr


READ, SUBMIT = "read-token-0123456789abcdef", "submit-token-0123456789abcdef"


@pytest.mark.service
def test_tokens_on_a_non_loopback_bind(tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"# role name token\nread manager {READ}\nsubmit engineer {SUBMIT}\n")
    folder = write_task(tmp_path / "task").parent
    bad = folder / "task.yaml"
    bad.write_text(bad.read_text().replace("top_k: 2", "topk: 2"))
    auth = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    with serve(tmp_path / "data", "--tokens", str(tokens), "--max-upload-mb", "1", host="0.0.0.0") as url:
        assert requests.get(url + "/api/runs", timeout=10).status_code == 401
        assert requests.get(url + "/api/runs", headers=auth("wrong-token-0123456789"), timeout=10).status_code == 401
        page = requests.get(url + "/", allow_redirects=False, timeout=10)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert requests.get(url + "/api/runs", headers=auth(READ), timeout=10).status_code == 200
        assert requests.get(url + "/api/openapi.json", headers=auth(READ), timeout=10).status_code == 200
        assert submit_zip(url, folder, headers=auth(READ)).status_code == 403
        r = submit_zip(url, folder, headers=auth(SUBMIT))
        assert r.status_code == 422 and r.json()["detail"] == "task.yaml: baselines.rag.topk: unknown key 'topk'"
        big = requests.post(url + "/api/runs", headers=auth(SUBMIT), timeout=30,
                            files=[("files", ("task.zip", b"0" * (2 << 20), "application/zip"))])
        assert big.status_code == 413
        # the login page keeps the token in an HttpOnly, SameSite=Strict cookie
        s = requests.Session()
        login = s.post(url + "/login", data={"token": READ, "next": "/"}, allow_redirects=False, timeout=10)
        assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
        assert "samesite=strict" in login.headers["set-cookie"].lower()
        assert s.get(url + "/", timeout=10).status_code == 200
        s2 = requests.Session()
        s2.post(url + "/login", data={"token": SUBMIT}, timeout=10)
        cross = s2.post(url + "/api/runs/1/cancel", headers={"Origin": "https://evil.example"}, timeout=10)
        assert cross.status_code == 403 and cross.json()["detail"] == "cross-site request refused"
        assert s2.post(url + "/api/runs/1/cancel", timeout=10).status_code == 404  # same site: allowed, no run 1


@pytest.mark.service
def test_loopback_without_tokens_checks_host_and_origin(tmp_path):
    folder = write_task(tmp_path / "task").parent
    with serve(tmp_path / "data") as url:
        rebound = requests.get(url + "/api/runs", headers={"Host": "attacker.example:8000"}, timeout=10)
        assert rebound.status_code == 421
        cross = requests.post(url + "/api/runs", headers={"Origin": "https://attacker.example"}, timeout=10,
                              files=[("files", ("task.zip", zip_folder(folder), "application/zip"))])
        assert cross.status_code == 403
        page = requests.get(url + "/", timeout=10)
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
