"""Record formats: one row of a data file → one :class:`Record`.

Formats are detected per record and must agree within a file:

- alpaca: ``instruction`` (+ optional ``input``) → ``output``
- sharegpt: ``conversations`` of ``{from, value}`` turns
- messages: OpenAI ``messages`` of ``{role, content}`` turns
- prompt_completion: ``prompt`` → ``completion``
- question_answer: ``question`` → ``answer``
- columns: an explicit ``data.columns`` mapping for anything else
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass
class Record:
    """One example: the user input, the reference output, and any earlier turns."""

    input: str
    output: str
    system: str | None = None
    history: list[dict] = field(default_factory=list)  # earlier {role, content} turns
    origin: tuple | None = field(default=None, compare=False, repr=False)  # (file, line) for errors

    def key(self) -> str:
        return hashlib.sha1(json.dumps([self.input.strip(), self.output.strip()]).encode()).hexdigest()

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("origin")
        return d


def detect_format(row: dict) -> str | None:
    """The record format of one row, or None when no known format fits."""
    if isinstance(row.get("conversations"), list):
        return "sharegpt"
    if isinstance(row.get("messages"), list):
        return "messages"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "question" in row and "answer" in row:
        return "question_answer"
    return None


_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
         "model": "assistant", "system": "system"}


def _from_turns(turns, role_key: str, text_key: str, where: str) -> Record:
    if not isinstance(turns, list):
        raise ValueError(f"'{where}' must be a list of turns, got {type(turns).__name__}")
    messages = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or role_key not in t or text_key not in t:
            raise ValueError(f"{where}[{i}] needs '{role_key}' and '{text_key}'")
        role = _ROLE.get(str(t[role_key]).lower())
        if role is None:
            raise ValueError(f"{where}[{i}]: unknown role {t[role_key]!r}")
        messages.append({"role": role, "content": _text(t[text_key], f"{where}[{i}].{text_key}", allow_empty=True)})
    system = None
    if messages and messages[0]["role"] == "system":
        system = messages.pop(0)["content"] or None
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
        raise ValueError(f"{where} must end with a user turn followed by an assistant turn")
    for name, turn in (("user", messages[-2]), ("assistant", messages[-1])):
        if not turn["content"].strip():
            raise ValueError(f"the last {name} turn in '{where}' is empty")
    return Record(input=messages[-2]["content"], output=messages[-1]["content"], system=system,
                  history=messages[:-2])


def _text(value, key: str, allow_empty: bool = False) -> str:
    """A field as text: numbers and booleans as written, lists and objects as JSON; lone surrogates
    (invalid UTF-16 halves that a JSON file can spell as \\ud800) are refused."""
    if value is None:
        if allow_empty:
            return ""
        raise ValueError(f"'{key}' is empty")
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"'{key}' holds an invalid character at position {e.start} (a lone surrogate)") from None
    return text


def _system(row: dict, key: str | None) -> str | None:
    """An optional per-record system prompt: text, or absent."""
    if key is None or row.get(key) in (None, ""):
        return None
    if not isinstance(row[key], str):
        raise ValueError(f"'{key}' must be text, got {type(row[key]).__name__}")
    return _text(row[key], key) or None


def to_record(row: dict, fmt: str, columns=None) -> Record:
    """Convert one row in format ``fmt``; raises ValueError naming the missing field."""
    def need(key):
        if key not in row and fmt == "columns":
            have = ", ".join(sorted(map(str, row))) or "none"
            raise ValueError(f"no column '{key}' (columns here: {have})")
        if key not in row or row[key] is None or (isinstance(row[key], str) and not row[key].strip()):
            raise ValueError(f"missing or empty field '{key}'")
        return _text(row[key], key)

    if fmt == "alpaca":
        instruction = need("instruction")
        extra = row.get("input")
        text = f"{instruction}\n\n{_text(extra, 'input')}" if extra not in (None, "") else instruction
        return Record(input=text, output=need("output"), system=_system(row, "system"))
    if fmt in ("sharegpt", "messages"):
        key = "conversations" if fmt == "sharegpt" else "messages"
        if key not in row:
            have = ", ".join(sorted(map(str, row))[:6]) or "none"
            raise ValueError(f"no '{key}' field (keys here: {have}); is data.format right?")
        role, text = ("from", "value") if fmt == "sharegpt" else ("role", "content")
        return _from_turns(row[key], role, text, key)
    if fmt == "prompt_completion":
        return Record(input=need("prompt"), output=need("completion"))
    if fmt == "question_answer":
        return Record(input=need("question"), output=need("answer"))
    if fmt == "columns":
        return Record(input=need(columns.input), output=need(columns.output), system=_system(row, columns.system))
    raise ValueError(f"unknown format {fmt!r}")
