"""Servers for the endpoint tests: a real ``transformers serve`` of a model folder on loopback, and
a small fault-injecting OpenAI-compatible server for the error paths (429 with Retry-After,
5xx, slow answers, 401/404, malformed grades)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_tiny_model(folder: Path) -> Path:
    """The tiny random-init test model as a folder ``transformers serve`` can load."""
    from foundation.models import load_model, load_tokenizer, resolve_model

    source = resolve_model("tiny-random")
    load_model(source, seed=0).save_pretrained(folder)
    load_tokenizer(source).save_pretrained(folder)
    return folder


class TransformersServe:
    """``transformers serve <folder>`` on a free loopback port, stopped by its own pid."""

    def __init__(self, folder: Path, log: Path, extra: list[str] = ()):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        exe = Path(sys.executable).parent / "transformers"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        self._log = log.open("w")
        self.proc = subprocess.Popen([str(exe), "serve", str(folder), "--host", "127.0.0.1", "--port", str(self.port),
                                      "--device", "cpu", *extra], stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait(self, seconds: float = 180) -> "TransformersServe":
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("transformers serve did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def completion(text: str, prompt_tokens: int = 11, completion_tokens: int = 3) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class FaultServer:
    """An OpenAI-compatible chat endpoint whose answers ``script(n, body)`` decides: it returns
    ``(status, headers, payload, delay_s)``; ``n`` counts requests from 0. Records every request
    (time, body, Authorization header) and the most requests it had in flight at once."""

    def __init__(self, script):
        self.script, self.requests, self.in_flight, self.max_in_flight = script, [], 0, 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with outer._lock:
                    n = len(outer.requests)
                    outer.requests.append((time.monotonic(), body, self.headers.get("Authorization")))
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    status, headers, payload, delay = outer.script(n, body)
                    time.sleep(delay)
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    for k, v in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def error(status: int, message: str) -> dict:
    return {"error": {"message": message, "type": "error", "code": status}}
