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


def _from_turns(turns: list, role_key: str, text_key: str, where: str) -> Record:
    messages = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or role_key not in t or text_key not in t:
            raise ValueError(f"{where}[{i}] needs '{role_key}' and '{text_key}'")
        role = _ROLE.get(str(t[role_key]).lower())
        if role is None:
            raise ValueError(f"{where}[{i}]: unknown role {t[role_key]!r}")
        messages.append({"role": role, "content": _text(t[text_key], f"{where}[{i}].{text_key}")})
    system = None
    if messages and messages[0]["role"] == "system":
        system = messages.pop(0)["content"]
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
        raise ValueError(f"{where} must end with a user turn followed by an assistant turn")
    return Record(input=messages[-2]["content"], output=messages[-1]["content"], system=system,
                  history=messages[:-2])


def _text(value, key: str) -> str:
    if value is None:
        raise ValueError(f"'{key}' is empty")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


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
        text = f"{instruction}\n\n{extra}" if extra not in (None, "") else instruction
        return Record(input=text, output=need("output"), system=row.get("system") or None)
    if fmt == "sharegpt":
        return _from_turns(row["conversations"], "from", "value", "conversations")
    if fmt == "messages":
        return _from_turns(row["messages"], "role", "content", "messages")
    if fmt == "prompt_completion":
        return Record(input=need("prompt"), output=need("completion"))
    if fmt == "question_answer":
        return Record(input=need("question"), output=need("answer"))
    if fmt == "columns":
        system = row.get(columns.system) if columns.system else None
        return Record(input=need(columns.input), output=need(columns.output), system=system or None)
    raise ValueError(f"unknown format {fmt!r}")


