"""The service's and the command line's boundaries: no secret in any output or file, the API's
description behind the tokens and inside the pages' CSP, warnings without the server's paths,
and a port in use or a hanging read as one-line errors. Against a real ``advise serve`` on
loopback and real ``advise submit`` processes."""
from __future__ import annotations

import logging
import os
import re
import socket
import subprocess

import pytest
import requests

from conftest import write_task
from conftest_service import ADVISE, env, free_port, run_state, serve, submit_zip
from endpoint_servers import FaultServer, completion
from foundation import secrets
from foundation.errors import AdviseError
from service.redaction import RedactingFilter
from service.settings import read_tokens

SUBMIT = "submit-secret-0123456789abcdef"
READ = "read-secret-0123456789abcdef"
WRONG = "wrong-secret-0123456789abcdef"
ENV_KEY = "env-api-key-secret-0123456789"


def _advise(*args: str, extra_env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*ADVISE, *args], env={**env(), **(extra_env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def _files_holding(root, secret: str, skip=()) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path not in skip and secret.encode() in path.read_bytes():
            found.append(str(path))
    return found


def test_redact_takes_out_remembered_secrets_env_secrets_url_passwords_and_bearer_tokens(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_API_KEY", ENV_KEY)
    secrets.remember("remembered-secret-0123456789\r\n")
    text = ("remembered-secret-0123456789 / remembered-secret-0123456789\\r / " + ENV_KEY +
            " / postgresql://me:pw-0123@db/x / Authorization: Bearer abc.def / Bearer <token>")
    shown = secrets.redact(text)
    for secret in ("remembered-secret-0123456789", ENV_KEY, "pw-0123", "abc.def"):
        assert secret not in shown, shown
    assert shown.count(secrets.SHOWN) == 5 and "Bearer <token>" in shown, shown


def test_a_secret_is_stripped_where_read_and_refused_unquoted_when_unusable():
    assert secrets.clean_secret(" tok-0123456789abcdef\r\n", where="--token") == "tok-0123456789abcdef"
    for bad, kind in (("tok\x00en-0123456789", "control character"), ("tok en-0123456789", "a space"),
                      ("tökén-0123456789", "non-ASCII"), (" \r\n", "is empty")):
        with pytest.raises(AdviseError, match=kind) as e:
            secrets.clean_secret(bad, where="--token")
        assert "0123456789" not in str(e.value)


def test_an_api_key_from_the_environment_is_stripped_or_refused_unquoted(monkeypatch):
    from foundation.compare_config import CompareModel
    from foundation.endpoints import Endpoint

    cfg = CompareModel(name="api", model="m", base_url="http://127.0.0.1:9/v1", api_key_env="ADVISE_TEST_KEY")
    monkeypatch.setenv("ADVISE_TEST_KEY", f"{ENV_KEY}\r\n")
    assert Endpoint(cfg, 0, None, "task.yaml").api_key() == ENV_KEY
    monkeypatch.setenv("ADVISE_TEST_KEY", f"{ENV_KEY}\x01tail")
    with pytest.raises(AdviseError, match="control character") as e:
        Endpoint(cfg, 0, None, "task.yaml").api_key()
    assert e.value.where == "compare.0.api_key_env" and ENV_KEY not in str(e.value)


def test_results_json_keeps_no_storage_password(tmp_path):
    from advisor.tasks import load_task
    from foundation.runinfo import new_results

    path = write_task(tmp_path / "t", corpus=False, extra="tune: {storage: 'postgresql://me:pw-secret-0123@db/x'}")
    results = new_results(load_task(path), "cpu", {})
    assert results.task["tune"]["storage"] == "postgresql://me:[redacted]@db/x"


def test_a_tokens_file_with_a_bom_and_crlf_line_ends_is_read_stripped(tmp_path):
    path = tmp_path / "tokens"
    path.write_bytes(f"\ufeffread manager {READ}\r\n# role name token\r\nsubmit engineer {SUBMIT} \r\n".encode())
    assert [(t.role, t.name, t.secret) for t in read_tokens(path)] == [
        ("read", "manager", READ), ("submit", "engineer", SUBMIT)]
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(AdviseError, match="not a regular file"):
        read_tokens(tmp_path / "pipe")  # returns at once: a named pipe is never opened


def test_a_job_s_events_and_log_tail_are_redacted(monkeypatch, capsys, tmp_path):
    from service.job import Emitter
    from service.worker import _log_tail

    monkeypatch.setenv("HF_TOKEN", ENV_KEY)  # a library's error quoting the worker's environment
    Emitter(None)("failure", message=f"401 for token {ENV_KEY}", nested={"args": [ENV_KEY]})
    err = capsys.readouterr().err
    assert ENV_KEY not in err and err.count(secrets.SHOWN) == 2, err
    (tmp_path / "job.log").write_text(f"Traceback ...\nValueError: bad header {ENV_KEY}\n")
    assert ENV_KEY not in _log_tail(tmp_path / "job.log") and secrets.SHOWN in _log_tail(tmp_path / "job.log")


def test_a_job_s_messages_name_paths_as_in_the_upload_not_the_worker_s_folders(tmp_path):
    import json

    from service.settings import make_settings
    from service.store import Store
    from service.worker import WorkerContext, _Relay

    settings = make_settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    store = Store(settings.db_url)
    run_id = store.create_run(name="t", mode="run", submitter="me", bundle_id=store.add_bundle(b"z", "0"),
                              task_path="task.yaml", tune=False, workers=1, warnings="[]")
    job = store.job(store.create_job(run_id, "main"))
    task_root = (settings.data_dir / "jobs" / str(job["id"]) / "task").resolve()
    read, write = os.pipe()
    relay = _Relay(WorkerContext(settings, store, None), job, store.run(run_id), read)
    relay.start()
    with os.fdopen(write, "w") as pipe:
        pipe.write(json.dumps({"kind": "log", "message": f"wrote {task_root}/runs/t/report.html"}) + "\n")
        pipe.write(json.dumps({"kind": "failure", "message": f"{task_root}/data/train.jsonl: line 3: bad"}) + "\n")
    relay.join(timeout=10)
    messages = [e["data"]["message"] for e in store.events(run_id)]
    assert messages == ["wrote runs/t/report.html", "data/train.jsonl: line 3: bad"], messages
    assert relay.error == "data/train.jsonl: line 3: bad"
    store.close()


def test_log_lines_and_tracebacks_are_redacted():
    secrets.remember(SUBMIT)
    record = logging.LogRecord("advise.service", logging.ERROR, __file__, 1, "token %s refused", (SUBMIT,), None)
    try:
        raise ValueError(f"Invalid header value b'Bearer {SUBMIT}'")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    out = logging.Formatter().format(record)
    assert SUBMIT not in out and "ValueError" in out and out.count(secrets.SHOWN) >= 2, out


@pytest.mark.service
def test_a_planted_secret_is_in_no_output_and_no_file(tmp_path):
    """Tokens from a CRLF file and in $ADVISE_TOKEN with a trailing CR LF, a wrong token, an unusable
    one, a secret-named environment variable on the server (so in its job's too) that a compared
    endpoint of the task uses as its API key: a run on the tiny model goes to its verdict, the
    endpoint got the key, and every output, answer, log and file written (the service's database
    among them) is grepped."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_bytes(f"read manager {READ}\r\nsubmit engineer {SUBMIT}\r\n".encode())
    api = FaultServer(lambda n, body: (200, {}, completion("Paris", 12, 2), 0))  # listens from `with api`
    folder = write_task(tmp_path / "task", corpus=False, extra=f"""
compare:
  - {{name: api, model: m, base_url: '{api.url}', api_key_env: MY_SERVICE_API_KEY, concurrency: 2,
     price_per_million_input: 0.4, price_per_million_output: 1.6}}
""").parent
    bad = write_task(tmp_path / "bad", corpus=False)
    bad.write_text(bad.read_text().replace("seed: 0", "seed: 0\nsed: 1"))
    data = tmp_path / "data"
    outputs = []
    with api, serve(data, "--tokens", str(tokens), env_extra={"MY_SERVICE_API_KEY": ENV_KEY}) as url:
        ok = _advise("submit", str(folder / "task.yaml"), "--server", url, "--json", "--wait", "--no-tune",
                     extra_env={"ADVISE_TOKEN": SUBMIT + "\r\n"}, timeout=600)
        assert ok.returncode == 0, ok.stderr
        assert re.search(r"submitted run \d+", ok.stderr) and "verdict: " in ok.stderr, ok.stderr
        wrong = _advise("submit", str(folder / "task.yaml"), "--server", url, "--token", WRONG)
        assert wrong.returncode == 2 and "401" in wrong.stderr, wrong.stderr
        broken = _advise("submit", str(folder / "task.yaml"), "--server", url, "--token", f"x\x01{SUBMIT}")
        assert broken.returncode == 2 and "--token: the token holds a control character" in broken.stderr
        invalid = _advise("submit", str(bad), "--server", url, "--token", SUBMIT)
        assert invalid.returncode == 2 and "unknown key 'sed'" in invalid.stderr, invalid.stderr
        outputs += [p.stdout + p.stderr for p in (ok, wrong, broken, invalid)]
        too_long = requests.post(url + "/login", data={"token": SUBMIT * 20}, timeout=10)
        assert too_long.status_code == 422
        unparsable = requests.get(url + "/api/runs/not-a-number", headers={"Authorization": f"Bearer {READ}"},
                                  timeout=10)
        assert unparsable.status_code == 422
        outputs += [too_long.text, unparsable.text]
        run = run_state(url, 1, {"Authorization": f"Bearer {READ}"})
        assert run["submitter"] == "engineer" and run["status"] == "complete"
        for f in run["files"]:  # what the run wrote, as the API serves it
            got = requests.get(f"{url}/api/runs/1/files/{f['path']}", headers={"Authorization": f"Bearer {READ}"},
                               timeout=30)
            outputs.append(got.content.decode("utf-8", "replace"))
        assert any(f["path"] == "results.json" for f in run["files"]), run["files"]
    outputs.append((tmp_path / f"serve-{url.rsplit(':', 1)[1]}.log").read_text())
    assert api.requests and {auth for _, _, auth in api.requests} == {f"Bearer {ENV_KEY}"}
    assert any(f["path"].endswith("api.answers.jsonl") for f in run["files"]), run["files"]
    for secret in (READ, SUBMIT, WRONG, ENV_KEY):
        assert not [o for o in outputs if secret in o], secret
        assert _files_holding(tmp_path, secret, skip={tokens}) == [], secret


@pytest.mark.service
def test_the_api_description_needs_a_token_and_its_page_stays_inside_the_csp(tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"read manager {READ}\n")
    with serve(tmp_path / "data", "--tokens", str(tokens), "--workers", "0", host="0.0.0.0") as url:
        assert requests.get(url + "/api/openapi.json", timeout=10).status_code == 401
        page = requests.get(url + "/api/docs", allow_redirects=False, timeout=10)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        auth = {"Authorization": f"Bearer {READ}"}
        doc = requests.get(url + "/api/openapi.json", headers=auth, timeout=10)
        assert doc.status_code == 200 and "/api/runs" in doc.json()["paths"]
        page = requests.get(url + "/api/docs", headers=auth, timeout=10)
        assert page.status_code == 200 and "/api/runs/{run_id}/cancel" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        sources = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
        assert sources and all(s.startswith("/") and not s.startswith("//") or s.startswith("data:")
                               for s in sources), sources


@pytest.mark.service
def test_warnings_carry_no_server_path(tmp_path):
    folder = write_task(tmp_path / "task").parent
    (folder / "docs" / "scan.pdf").write_bytes(b"%PDF-1.4 not indexed")
    data = tmp_path / "data"
    with serve(data, "--workers", "0") as url:
        r = submit_zip(url, folder)
        assert r.status_code == 201, r.text
        warnings = r.json()["warnings"]
        assert any("docs/scan.pdf" in w for w in warnings), warnings
        page = requests.get(f"{url}/runs/{r.json()['id']}", timeout=10).text
    for shown in [*warnings, page]:
        assert str(data) not in shown and str(data.resolve()) not in shown and "uploads/" not in shown, shown


@pytest.mark.service
def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _advise("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --port: cannot listen on 127.0.0.1:{port}: the address is already in use (another server?)"]
    unused = free_port()
    proc = _advise("serve", "--port", str(unused), "--data-dir", str(tmp_path / "data"), "--db",
                   "postgresql://me:pw-secret-0123@127.0.0.1:9/advise")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --db: cannot open the database"), proc.stderr
    assert "pw-secret-0123" not in proc.stderr and "Traceback" not in proc.stderr
