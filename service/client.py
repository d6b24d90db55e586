"""``advise submit task.yaml --server URL [--wait]``: the task folder, zipped, to a server's API.

The server checks it with the CLI's own checks; its error comes back as the same one line and
exit code 2. ``--wait`` follows the run's server-sent events, prints each stage as it starts, and
exits 0 when the run completes (1 when it fails or is cancelled).
"""
from __future__ import annotations

import http.client
import io
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path

from foundation.errors import AdviseError
from foundation.secrets import clean_secret, redact

SKIP_DIRS = {".git", ".venv", "__pycache__", ".ipynb_checkpoints", "node_modules"}
# Seconds a socket may wait (to connect, or between two reads). The event stream sends a keep-alive
# comment every 15 s, so a minute of silence is a dead connection, picked up again by follow().
TIMEOUT_S = 120
STREAM_TIMEOUT_S = 60


class Unreachable(AdviseError):
    """The server did not answer (refused, timed out, reset): ``follow`` tries again."""


def check_server(server: str) -> str:
    """The server's base URL, checked before anything connects: http or https, a host, a valid port.

    >>> check_server(" http://127.0.0.1:8000/ ")
    'http://127.0.0.1:8000'
    """
    url = server.strip()
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number, or out of range, raises here)
    except ValueError as e:
        raise AdviseError(f"not a URL ({e})", where="--server") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AdviseError(f"expected http://host:port or https://host, got {redact(url)!r}", where="--server")
    if parts.query or parts.fragment:
        raise AdviseError("give the server's base URL, without ?query or #fragment", where="--server")
    if any(not 32 < ord(c) < 127 for c in url):
        raise AdviseError("the URL holds a space, a control or a non-ASCII character", where="--server")
    return url.rstrip("/")


def check_token(token: str | None) -> str | None:
    """The --token (or $ADVISE_TOKEN) stripped of surrounding whitespace; refused, unquoted, when unusable."""
    return None if token is None else clean_secret(token, where="--token")


def zip_task_folder(task_file: Path) -> tuple[bytes, str]:
    """The folder of ``task_file`` as a zip without its runs (``output.dir``) or hidden folders."""
    from advisor.tasks import load_task

    task = load_task(task_file)  # the CLI's errors, before anything is sent
    root = task_file.resolve().parent
    runs = task.resolve(task.output.dir).resolve()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                                 and (here / d).resolve() != runs)
            for name in sorted(filenames):
                path = here / name
                if path.is_file() and not path.is_symlink():
                    z.write(path, path.relative_to(root).as_posix())
    return buf.getvalue(), task_file.resolve().relative_to(root).as_posix()


def _multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = f"advise-{uuid.uuid4().hex}"
    out = io.BytesIO()
    for key, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
              "Content-Type: application/zip\r\n\r\n".encode())
    out.write(content)
    out.write(f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _request(url: str, token: str | None, *, data: bytes | None = None, content_type: str | None = None,
             accept: str = "application/json", timeout: float = TIMEOUT_S):
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {check_token(token)}"
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read().decode("utf-8", "replace")).get("detail")
        except (ValueError, AttributeError):
            detail = None
        if e.code in (413, 422) and isinstance(detail, str):
            raise AdviseError(detail) from None
        raise AdviseError(f"the server answered {e.code}: {detail or e.reason}", where="--server") from None
    except urllib.error.URLError as e:
        raise Unreachable(f"cannot reach {url}: {e.reason}", where="--server") from None
    except (OSError, http.client.HTTPException) as e:  # a timeout, a connection reset, not HTTP at all
        raise Unreachable(f"cannot reach {url}: {type(e).__name__}: {e}", where="--server") from None


def submit(task_file: Path, server: str, *, token: str | None = None, mode: str = "run", tune: bool = True,
           workers: int = 1) -> dict:
    """Send the task; returns the run as the API describes it (``url`` is its page)."""
    content, task_rel = zip_task_folder(task_file)
    body, ctype = _multipart({"task": task_rel, "mode": mode, "tune": "true" if tune else "false",
                              "workers": str(workers), "submitter": os.environ.get("USER", "")[:100] or "cli"},
                             "task.zip", content)
    with _request(server.rstrip("/") + "/api/runs", token, data=body, content_type=ctype) as r:
        return json.load(r)


def follow(server: str, run_id: int, token: str | None, echo, reconnects: int = 20) -> dict:
    """Read the run's events until it ends, echoing stages; returns the run as it finished.
    A dropped stream (a proxy's timeout, a server restart) is picked up where it stopped."""
    base = server.rstrip("/")
    state = {"last": 0, "run": None, "stage": None, "status": None}
    for _ in range(reconnects):
        try:
            if _read_stream(f"{base}/api/runs/{run_id}/events?after={state['last']}", run_id, token, echo, state):
                break
        except (OSError, ValueError, Unreachable):  # the connection dropped mid-stream, or the server restarts
            pass
        time.sleep(2)
    with _request(f"{base}/api/runs/{run_id}", token) as r:
        return json.load(r)


def _read_stream(url: str, run_id: int, token: str | None, echo, state: dict) -> bool:
    """One connection to a run's event stream; True once the run has ended."""
    event = None
    with _request(url, token, accept="text/event-stream", timeout=STREAM_TIMEOUT_S) as stream:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("id:") and line[3:].strip().isdigit():
                state["last"] = int(line[3:].strip())
            elif line.startswith("data:") and event:
                data = json.loads(line[5:].strip())
                # Stages come from the stored progress events, each once: the polled `run` row
                # can skip a stage that starts and ends between two polls.
                if event == "task" and data.get("description") != state["stage"]:
                    state["stage"] = data["description"]
                    echo(f"run {run_id}: running: {data['description']}")
                elif event == "run" and data["status"] != state.get("status"):
                    state["status"], state["stage"] = data["status"], data["stage"]
                    echo(f"run {data['id']}: {data['status']}: {data['stage']}")
                elif event in ("log", "failure"):
                    echo(("error: " if event == "failure" else "") + data.get("message", ""))
                elif event == "end":
                    return True
            elif not line:
                event = None
    return False


def print_outcome(run: dict, server: str, echo=print) -> int:
    echo(f"run {run['id']} {run['status']}" + (f": {run['error']}" if run.get("error") else ""))
    if run.get("headline"):
        echo(f"verdict: {run['headline']}")
    if run["status"] == "complete":
        echo(f"report: {server.rstrip('/')}/api/runs/{run['id']}/report")
    return 0 if run["status"] == "complete" else 1


def stderr(message: str) -> None:
    print(redact(message), file=sys.stderr, flush=True)
