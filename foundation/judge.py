"""The LLM judge (metric ``llm_judge``): a ``compare:`` model grades each answer against its reference.

The task's ``metric.rubric`` (or :data:`RUBRIC`) says what a good answer is; the judge replies
with a score from 0 to 10, read by :func:`parse_grade` and scaled to [0, 1], so grades feed the
same paired bootstrap as any metric. A reply with no readable score is asked again (``RETRIES``
times, reminding the judge of the format); one still unreadable scores 0 and is counted and
reported (``details.judge.malformed``, a caution in the verdict), never silently. Grades are
cached in ``runs/<name>/judge/grades.jsonl`` by (judge, rubric, input, prediction, reference),
so a re-run pays only for new answers; the judge's billed tokens and cost are reported.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from types import SimpleNamespace

from foundation.endpoints import KeyedLines

RUBRIC = ("Grade how well the ANSWER answers the QUESTION compared with the REFERENCE answer. "
          "10: it says what the reference says (wording may differ); 5: partly right or incomplete; "
          "0: wrong, empty or off-topic.")
FORMAT = "Reply with the score only: one number from 0 to 10."
RETRIES = 2
_NUMBER = r"(\d+(?:\.\d+)?)"
_PATTERNS = (
    re.compile(r'"(?:score|grade|rating)"\s*:\s*"?' + _NUMBER, re.I),  # {"score": 7}
    re.compile(r"\b(?:score|grade|rating)\b[^0-9\n]{0,12}" + _NUMBER, re.I),  # Score: 7, final grade is 7
    re.compile(_NUMBER + r"\s*(?:/|out of)\s*10\b", re.I),  # 7/10, 7 out of 10
)
_LOCAL: dict = {}
_LOCK = threading.Lock()


def parse_grade(text: str) -> float | None:
    """The score in a judge's reply, scaled to [0, 1]; None when there is no unambiguous one.

    >>> [parse_grade(t) for t in ("7", "**8**", "Score: 6/10", '{"score": 10}', "9.5 out of 10", "I'd say 4.")]
    [0.7, 0.8, 0.6, 1.0, 0.95, None]
    >>> [parse_grade(t) for t in ("", "great answer", "12", "Score: 11")]
    [None, None, None, None]
    """
    text = (text or "").strip()
    for pattern in _PATTERNS:
        m = pattern.search(text)
        if m:
            return _scaled(m.group(1))
    bare = text.strip(" *_`'\".\n\t")
    if re.fullmatch(_NUMBER, bare):
        return _scaled(bare)
    return None


def _scaled(number: str) -> float | None:
    value = float(number)
    return round(value / 10, 6) if 0 <= value <= 10 else None


def judge_messages(rubric: str, record, prediction: str) -> list[dict]:
    also = "".join(f"\nAlso acceptable: {a}" for a in record.alternatives)
    user = (f"{rubric}\n\nQUESTION:\n{record.input}\n\nREFERENCE:\n{record.output}{also}\n\n"
            f"ANSWER:\n{prediction}\n\n{FORMAT}")
    return [{"role": "system", "content": "You are a strict, fair grader."}, {"role": "user", "content": user}]


class GradeCache(KeyedLines):
    """Grades by (judge, rubric, input, prediction, reference), one JSON line each."""

    @staticmethod
    def key(judge, rubric: str, record, prediction: str) -> str:
        blob = [judge.name, judge.model, judge.base_url, rubric, record.input, prediction, record.output,
                record.alternatives]
        return hashlib.sha256(json.dumps(blob).encode()).hexdigest()

    def put(self, key: str, row: dict) -> None:
        self.add({"key": key, **row})


def judge_model(task):
    """The judging model behind the one generation interface (an endpoint, or a local model loaded once)."""
    cfg = next(m for m in task.compare if m.name == task.metric.judge)
    if cfg.kind == "endpoint":
        from foundation.endpoints import EndpointModel, endpoint_for

        return EndpointModel(endpoint_for(task, cfg.name, "judge")), cfg
    from foundation.generation import LocalModel
    from foundation.models import load_model, load_tokenizer, pick_device, resolve_model

    with _LOCK:
        if cfg.model not in _LOCAL:
            source = resolve_model(cfg.model, task.base_dir)
            _LOCAL[cfg.model] = (load_model(source, device=pick_device(task.device)), load_tokenizer(source))
    return LocalModel(cfg.name, *_LOCAL[cfg.model]), cfg


def grade_records(task, predictions: list[str], records) -> tuple[list[float], dict]:
    """Each prediction's grade in [0, 1] and the report: counts, malformed ones, billed tokens, cost."""
    model, cfg = judge_model(task)
    rubric = task.metric.rubric or RUBRIC
    cache = GradeCache(task.run_dir / "judge" / "grades.jsonl")
    keys = [GradeCache.key(cfg, rubric, r, p) for r, p in zip(records, predictions)]
    todo = [i for i, k in enumerate(keys) if k not in cache.rows]
    gen = SimpleNamespace(max_new_tokens=32, do_sample=False, temperature=1.0, batch_size=task.generation.batch_size)
    billed = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "requests": 0}
    grades: dict[int, float | None] = {}
    replies: dict[int, str] = {}
    conversations = {i: judge_messages(rubric, records[i], predictions[i]) for i in todo}
    for attempt in range(RETRIES + 1):
        ask = [i for i in todo if grades.get(i) is None]
        if not ask:
            break
        convs = [conversations[i] if attempt == 0 else
                 [*conversations[i], {"role": "assistant", "content": replies[i]}, {"role": "user", "content": FORMAT}]
                 for i in ask]
        gens = model.answer(convs, gen, salt=f"judge-retry-{attempt}" if attempt else "")
        _bill(billed, model, gens)
        for i, text in zip(ask, gens.texts):
            replies[i], grades[i] = text, parse_grade(text)
    for i in todo:
        cache.put(keys[i], {"score": grades.get(i), "reply": replies.get(i, "")[:500]})
    rows = [cache.rows[k] for k in keys]
    malformed = [i for i, row in enumerate(rows) if row["score"] is None]
    report = {"judge": cfg.name, "judge_model": cfg.model, "rubric": "task" if task.metric.rubric else "default",
              "graded": len(rows), "cached": len(rows) - len(todo), "malformed": len(malformed), "retries": RETRIES,
              "malformed_examples": malformed[:20], **billed}
    if billed["cost_usd"] is None or (cfg.kind == "endpoint" and not cfg.priced):
        report["cost_usd"] = None  # unpriced: unknown, not free
    return [row["score"] if row["score"] is not None else 0.0 for row in rows], {"judge": report}


def _bill(billed: dict, model, gens) -> None:
    replies = gens.replies or []
    fresh = [r for r in replies if not r.cached]
    billed["requests"] += len(fresh) if gens.replies is not None else len(gens.texts)
    billed["prompt_tokens"] += sum(r.prompt_tokens or 0 for r in fresh)
    billed["completion_tokens"] += sum(r.completion_tokens or 0 for r in fresh)
    cost = model.cost(fresh)
    billed["cost_usd"] = None if cost is None or billed["cost_usd"] is None else billed["cost_usd"] + cost
