"""Helpers for the service tests: a real ``advise serve`` (or ``advise worker``) process on loopback,
and small HTTP helpers. Nothing here is mocked: the tests talk to uvicorn over TCP."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import requests

ADVISE = [sys.executable, "-m", "commands.cli"]
REPO = Path(__file__).resolve().parent.parent


def env() -> dict:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, every: float = 0.25):
    """Call ``check()`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 40) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def serve(data_dir: Path, *args: str, port: int | None = None, host: str = "127.0.0.1", headers=None,
          env_extra: dict | None = None):
    """``advise serve`` in its own process; yields its base URL once /api/health answers."""
    port = port or free_port()
    log = open(data_dir.parent / f"serve-{port}.log", "wb")
    proc = subprocess.Popen([*ADVISE, "serve", "--data-dir", str(data_dir), "--port", str(port), "--host", host,
                             "--heartbeat", "1", *args], env={**env(), **(env_extra or {})}, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"advise serve exited with {proc.returncode}: {Path(log.name).read_text()[-3000:]}")
        try:
            return requests.get(url + "/api/health", timeout=2, headers=headers).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, 60, "advise serve to answer")
        yield url
    finally:
        stop(proc)
        log.close()


@contextmanager
def worker(data_dir: Path, *args: str):
    """``advise worker`` in its own process (its log next to its data dir)."""
    log = open(f"{data_dir}.log", "wb")
    proc = subprocess.Popen([*ADVISE, "worker", "--data-dir", str(data_dir), "--heartbeat", "1", *args], env=env(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc, signal.SIGINT)
        log.close()


def zip_folder(folder: Path, exclude: tuple[str, ...] = ("runs",)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder)
            if p.is_file() and rel.parts[0] not in exclude:
                z.write(p, rel.as_posix())
    return buf.getvalue()


def submit_zip(url: str, folder: Path, headers=None, **fields) -> requests.Response:
    data = {k: (json.dumps(v) if isinstance(v, bool) else str(v)) for k, v in fields.items()}
    return requests.post(url + "/api/runs", files=[("files", ("task.zip", zip_folder(folder), "application/zip"))],
                         data=data, headers=headers, timeout=60)


def run_state(url: str, run_id: int, headers=None) -> dict:
    r = requests.get(f"{url}/api/runs/{run_id}", headers=headers, timeout=10)
    r.raise_for_status()
    return r.json()


def wait_status(url: str, run_id: int, statuses: tuple[str, ...], timeout: float, headers=None) -> dict:
    return wait_for(lambda: (lambda r: r if r["status"] in statuses else None)(run_state(url, run_id, headers)),
                    timeout, f"run {run_id} to be {' or '.join(statuses)}", every=0.5)


def sse(url: str, headers=None, timeout: float = 120) -> list[tuple[str, dict]]:
    """All events of a finite event stream (a run's), as (event, data)."""
    out, event = [], None
    with requests.get(url, stream=True, headers=headers, timeout=timeout) as r:
        r.raise_for_status()
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event:
                out.append((event, json.loads(line[5:].strip())))
                if event == "end":
                    break
            elif not line:
                event = None
    return out
