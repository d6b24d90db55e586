"""OpenAI-compatible endpoints as models: requests through the ``openai`` client, bounded
concurrency, retries, a response cache in the run folder, billed usage, one-line errors.

Retries are the client's own (``max_retries``: timeouts, 408/409/429 and 5xx, exponential backoff
honouring the server's Retry-After). Every answer is appended to a JSON Lines cache in the run
folder as it arrives, so a run stopped half-way resumes without paying for an answer twice.
The API key is read from the environment variable the task names and kept only in the client:
it is never written anywhere, and any error text that might quote it is scrubbed.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import AdviseError, first_line

NO_KEY = "no-key"  # what a keyless local server gets; never the user's OPENAI_API_KEY by accident


@dataclass
class Reply:
    text: str
    prompt_tokens: int | None  # as the API reports them (usage); None when it reports none
    completion_tokens: int | None
    seconds: float  # the request's wall time when it was made (a cached reply keeps it)
    cached: bool = False


class KeyedLines:
    """Rows by their ``key``, kept in a JSON Lines file appended one row at a time (so a stopped
    run keeps what it had; a torn last line is skipped when the file is read again)."""

    def __init__(self, path: Path | None):
        self.path, self._lock, self.rows = path, threading.Lock(), {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.rows[row["key"]] = row
                except (ValueError, KeyError, TypeError):
                    continue

    def add(self, row: dict) -> None:
        with self._lock:
            self.rows[row["key"]] = row
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")


class ResponseCache(KeyedLines):
    """Answers by request key."""

    def get(self, key: str) -> Reply | None:
        row = self.rows.get(key)
        if row is None:
            return None
        return Reply(row["text"], row.get("prompt_tokens"), row.get("completion_tokens"), row.get("seconds", 0.0), True)

    def put(self, key: str, reply: Reply) -> None:
        self.add({"key": key, "text": reply.text, "prompt_tokens": reply.prompt_tokens,
                  "completion_tokens": reply.completion_tokens, "seconds": reply.seconds})


def sampling(gen) -> dict:
    """The task's ``generation:`` section as request parameters."""
    return {"max_tokens": gen.max_new_tokens, "temperature": gen.temperature if gen.do_sample else 0.0}


class Endpoint:
    """One ``compare:`` entry with a ``base_url``: ``complete`` one conversation, ``complete_all`` many."""

    def __init__(self, cfg, index: int, cache_path: Path | None = None, task_file: str | None = None):
        self.cfg, self.index, self.task_file = cfg, index, task_file
        self.cache = ResponseCache(cache_path)
        self._client = None

    def where(self, key: str) -> str:
        return f"compare.{self.index}.{key}"

    def error(self, message: str, key: str) -> AdviseError:
        return AdviseError(self.scrub(message), file=self.task_file, where=self.where(key))

    def api_key(self) -> str:
        env = self.cfg.api_key_env
        if env is None:
            return NO_KEY
        value = os.environ.get(env, "")
        if not value.strip():
            raise self.error(f"the environment variable {env} is not set: export {env}=<your key> "
                             "(the key is read from the environment only)", "api_key_env")
        from foundation.secrets import clean_secret

        # stripped, refused unquoted when an HTTP header cannot carry it, and redacted from every error line
        return clean_secret(value, where=self.where("api_key_env"), file=self.task_file)

    def scrub(self, text: str) -> str:
        env = self.cfg.api_key_env
        key = os.environ.get(env, "").strip() if env else ""
        return text.replace(key, "***") if len(key) >= 4 else text

    @property
    def client(self):
        if self._client is None:
            import openai

            self._client = openai.OpenAI(base_url=self.cfg.base_url, api_key=self.api_key(),
                                         timeout=self.cfg.timeout, max_retries=self.cfg.max_retries)
        return self._client

    def request_key(self, messages: list[dict], params: dict, salt: str = "") -> str:
        blob = json.dumps([self.cfg.base_url, self.cfg.model, messages, params, salt], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def complete(self, messages: list[dict], params: dict, *, salt: str = "") -> Reply:
        """One chat completion: from the cache when this exact request was answered before."""
        key = self.request_key(messages, params, salt)
        if (hit := self.cache.get(key)) is not None:
            return hit
        t0 = time.perf_counter()
        try:
            resp = self.client.chat.completions.create(model=self.cfg.model, messages=messages, **params)
        except Exception as e:  # the client's errors become one line naming the task key
            raise self.translate(e) from None
        seconds = time.perf_counter() - t0
        choice = resp.choices[0] if resp.choices else None
        text = ((choice.message.content if choice is not None else "") or "").strip()
        usage = resp.usage
        reply = Reply(text, getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None), seconds)
        self.cache.put(key, reply)
        return reply

    def complete_all(self, conversations: list[list[dict]], params: dict, *, on_done=None, salt: str = "",
                     concurrency: int | None = None) -> tuple[list[Reply], float]:
        """Every conversation, at most ``concurrency`` (default the entry's) requests in flight;
        the replies in input order and the wall time of the whole batch."""
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        replies: list[Reply | None] = [None] * len(conversations)
        if any(self.cache.get(self.request_key(m, params, salt)) is None for m in conversations):
            self.client  # noqa: B018  (made once here, not by each thread; a missing key fails before any request)
        t0 = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=concurrency or self.cfg.concurrency)
        try:
            futures = {pool.submit(self.complete, m, params, salt=salt): i for i, m in enumerate(conversations)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for f in done:
                    replies[futures[f]] = f.result()  # re-raises the first failure
                    if on_done:
                        on_done(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return replies, time.perf_counter() - t0  # type: ignore[return-value]

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        """USD of one request as billed, or None when unpriced (no price, or no usage reported)."""
        cfg = self.cfg
        if not cfg.priced or prompt_tokens is None or completion_tokens is None:
            return None
        return (prompt_tokens * cfg.price_per_million_input + completion_tokens * cfg.price_per_million_output) / 1e6

    def translate(self, e: Exception) -> AdviseError:
        """The client's exception as a one-line error naming the key to look at."""
        import openai

        cfg, url = self.cfg, self.cfg.base_url
        status = getattr(e, "status_code", None)
        tries = f"after {cfg.max_retries} retries" if cfg.max_retries else "(max_retries is 0)"
        if isinstance(e, AdviseError):
            return e
        if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return self.error(f"{url} refused the API key in ${cfg.api_key_env or '(none)'} (HTTP {status})",
                              "api_key_env")
        if isinstance(e, openai.NotFoundError):
            return self.error(f"{url} has no model {cfg.model!r} (HTTP 404; check model and base_url)", "model")
        if isinstance(e, openai.RateLimitError):
            return self.error(f"{url} still answers 429 (rate limit) {tries}; lower concurrency ({cfg.concurrency}) "
                              "or raise max_retries", "concurrency")
        if isinstance(e, openai.APITimeoutError):
            return self.error(f"no answer from {url} within {cfg.timeout:g} s {tries}", "timeout")
        if isinstance(e, openai.APIConnectionError):
            cause = first_line(e.__cause__) if e.__cause__ else first_line(e)
            return self.error(f"cannot connect to {url} {tries}: {cause}", "base_url")
        if isinstance(e, openai.APIStatusError):
            return self.error(f"{url} answered HTTP {status} {tries}: {first_line(e)[:200]}",
                              "model" if status in (400, 422) else "base_url")
        return self.error(f"request to {url} failed: {type(e).__name__}: {first_line(e)[:200]}", "base_url")


class EndpointModel:
    """An endpoint behind the same interface as ``foundation.generation.LocalModel``."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint

    @property
    def name(self) -> str:
        return self.endpoint.cfg.name

    def answer(self, conversations: list[list[dict]], gen, on_batch=None, salt: str = ""):
        from foundation.generation import Generations

        replies, seconds = self.endpoint.complete_all(conversations, sampling(gen), on_done=on_batch, salt=salt)
        return Generations([r.text for r in replies], [r.prompt_tokens or 0 for r in replies],
                           [r.completion_tokens or 0 for r in replies], seconds, replies=replies)

    def cost(self, replies: list[Reply]) -> float | None:
        costs = [self.endpoint.cost(r.prompt_tokens, r.completion_tokens) for r in replies]
        return None if any(c is None for c in costs) else float(sum(costs))


def endpoint_for(task, name: str, cache_name: str) -> Endpoint:
    """The ``compare:`` endpoint called ``name``, caching under ``run_dir/endpoints/<cache_name>``."""
    from foundation.paths import display_path

    index = next(i for i, m in enumerate(task.compare) if m.name == name)
    shown = display_path(task.source_path) if task.source_path else None
    folder = task.run_dir / "endpoints"
    return Endpoint(task.compare[index], index, folder / f"{safe_name(name)}.{cache_name}.jsonl", shown)


def safe_name(name: str) -> str:
    """``name`` as a file name: letters, digits, '.', '_' and '-' kept, anything else '_'."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def check_endpoints(task, *, online: bool = False) -> list[str]:
    """``advise validate``: each endpoint's key is in the environment (offline); with ``online``
    one tiny request each. Raises the one-line error; returns warnings (unpriced entries)."""
    warnings = []
    for i, cfg in enumerate(task.compare):
        if cfg.kind != "endpoint":
            continue
        endpoint = Endpoint(cfg, i, None, None)
        endpoint.api_key()
        if not cfg.priced:
            warnings.append(f"compare.{i}: no price_per_million_input/output: {cfg.name}'s candidates are "
                            "unpriced (their cost is unknown, not zero)")
        if online:
            endpoint.complete([{"role": "user", "content": "Say OK."}], {"max_tokens": 1, "temperature": 0.0},
                              salt=str(time.time()))
    return warnings
