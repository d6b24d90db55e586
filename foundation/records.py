"""Record formats: one row of a data file → one :class:`Record`.

Formats are detected per record and must agree within a file:

- alpaca: ``instruction`` (+ optional ``input``) → ``output``
- dolly: ``instruction`` (+ optional ``context``) → ``response``
- sharegpt: ``conversations`` of ``{from, value}`` turns
- messages: OpenAI ``messages`` of ``{role, content}`` turns
- prompt_completion: ``prompt`` → ``completion``
- question_answer: ``question`` → ``answer``
- columns: an explicit ``data.columns`` mapping for anything else

Preference data (``data_kind`` says which kind a file holds; the chosen or judged answer is
``Record.output``, so every preference record also serves supervised fine-tuning):

- preference: TRL's paired ``prompt`` / ``chosen`` / ``rejected``, as text or as messages
- sharegpt_preference: LLaMA-Factory's ``conversations`` + ``chosen`` / ``rejected`` turns
- openai_preference: OpenAI's ``input.messages`` + ``preferred_output`` / ``non_preferred_output``
- unpaired: KTO's ``prompt`` / ``completion`` / ``label`` (text or messages), or ``messages`` + ``label``
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from foundation.corpus import has_text
from foundation.fields import answer_texts as _answer_texts, differ as _differ, label as _label, text as _text
from foundation.fields import transcript as _transcript


@dataclass
class Record:
    """One example: the user input, the reference output, and any earlier turns."""

    input: str
    output: str
    system: str | None = None
    history: list[dict] = field(default_factory=list)  # earlier {role, content} turns
    rejected: str | None = None  # paired preference data: the worse answer (``output`` is the chosen one)
    label: bool | None = None  # unpaired preference data (KTO): whether ``output`` is a desirable answer
    alternatives: list[str] = field(default_factory=list)  # other acceptable references (SQuAD's answers list)
    origin: tuple | None = field(default=None, compare=False, repr=False)  # (file, line) for errors

    def key(self) -> str:
        """The same example: the same input, answer, system prompt and earlier turns."""
        return hashlib.sha1(json.dumps([self.input.strip(), self.output.strip(), self.system or "",
                                        self.history]).encode()).hexdigest()

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("origin")
        return d


PAIRED_FORMATS = ("preference", "sharegpt_preference", "openai_preference")
UNPAIRED_FORMATS = ("unpaired",)
SFT_FORMATS = ("alpaca", "dolly", "sharegpt", "messages", "prompt_completion", "question_answer", "columns")
KIND_WORDS = {"sft": "sft records (input → output)",
              "preference": "paired preference records (prompt/chosen/rejected)",
              "unpaired": "unpaired preference records (label)"}


def data_kind(fmt_or_records) -> str:
    """``"sft"``, ``"preference"`` (chosen/rejected pairs) or ``"unpaired"`` (KTO labels): what a
    format, or a list of records, can train. The objectives a study may search depend on it.

    >>> data_kind("sharegpt_preference"), data_kind([Record("q", "a", label=True)]), data_kind("alpaca")
    ('preference', 'unpaired', 'sft')
    """
    if isinstance(fmt_or_records, str):
        if fmt_or_records in PAIRED_FORMATS:
            return "preference"
        if fmt_or_records in UNPAIRED_FORMATS:
            return "unpaired"
        if fmt_or_records in SFT_FORMATS:
            return "sft"
        raise ValueError(f"no data kind for format {fmt_or_records!r} (detect the format first)")
    kinds = {"preference" if r.rejected is not None else "unpaired" if r.label is not None else "sft"
             for r in fmt_or_records}
    if len(kinds) > 1:
        raise ValueError(f"the records mix kinds: {', '.join(sorted(kinds))}")
    return kinds.pop() if kinds else "sft"


def is_preference(records) -> bool:
    """Records that carry a preference (a rejected answer, or a desirable/undesirable label): their
    quality is scored from likelihoods, not from a generated answer."""
    return bool(records) and all(r.rejected is not None or r.label is not None for r in records)


def detect_format(row: dict) -> str | None:
    """The record format of one row, or None when no known format fits. Preference formats come
    first: their keys overlap the SFT ones (``prompt`` + ``completion`` + ``label`` is unpaired)."""
    if "chosen" in row or "rejected" in row:
        if isinstance(row.get("conversations"), list):
            return "sharegpt_preference"
        if "prompt" in row or ("chosen" in row and "rejected" in row):  # without one: TRL's implicit prompt
            return "preference"
    if "preferred_output" in row or "non_preferred_output" in row:
        return "openai_preference"
    if "label" in row and (("prompt" in row and "completion" in row) or isinstance(row.get("messages"), list)):
        return "unpaired"
    if isinstance(row.get("conversations"), list):
        return "sharegpt"
    if isinstance(row.get("messages"), list):
        return "messages"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "instruction" in row and "response" in row:
        return "dolly"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "question" in row and "answer" in row:
        return "question_answer"
    return None


_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
         "model": "assistant", "system": "system"}


_TOOL_ROLES = ("tool", "function", "ipython", "function_call", "observation")


def _messages(turns, role_key: str, text_key: str, where: str) -> tuple[str | None, list[dict]]:
    """(system prompt, the other turns as {role, content}) of a list of turns."""
    if not isinstance(turns, list):
        raise ValueError(f"'{where}' must be a list of turns, got {type(turns).__name__}")
    messages = []
    for i, t in enumerate(turns):
        if isinstance(t, dict) and (t.get("tool_calls") or t.get("function_call")
                                    or str(t.get(role_key, "")).lower() in _TOOL_ROLES):
            raise ValueError(f"{where}[{i}] is a tool or function-call turn; advise measures and trains plain "
                             "question-and-answer turns: leave those conversations out")
        if not isinstance(t, dict) or role_key not in t or text_key not in t:
            raise ValueError(f"{where}[{i}] needs '{role_key}' and '{text_key}'")
        role = _ROLE.get(str(t[role_key]).lower())
        if role is None:
            raise ValueError(f"{where}[{i}]: unknown role {t[role_key]!r}")
        messages.append({"role": role, "content": _text(t[text_key], f"{where}[{i}].{text_key}", allow_empty=True)})
    system = None
    if messages and messages[0]["role"] == "system":
        system = messages.pop(0)["content"] or None
    return system, messages


def _from_turns(turns, role_key: str, text_key: str, where: str, unlabeled: bool = False) -> Record:
    system, messages = _messages(turns, role_key, text_key, where)
    if unlabeled and messages and messages[-1]["role"] == "user" and messages[-1]["content"].strip():
        return Record(input=messages[-1]["content"], output="", system=system, history=messages[:-1])
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
        raise ValueError(f"{where} must end with a user turn followed by an assistant turn")
    for name, turn in (("user", messages[-2]), ("assistant", messages[-1])):
        if not turn["content"].strip():
            raise ValueError(f"the last {name} turn in '{where}' is empty")
    return Record(input=messages[-2]["content"], output=messages[-1]["content"], system=system,
                  history=messages[:-2])


def _system(row: dict, key: str | None) -> str | None:
    """An optional per-record system prompt: text, or absent."""
    if key is None or row.get(key) in (None, ""):
        return None
    if not isinstance(row[key], str):
        raise ValueError(f"'{key}' must be text, got {type(row[key]).__name__}")
    return _text(row[key], key) or None


def to_record(row: dict, fmt: str, columns=None, *, untyped: bool = False, answer_lists: bool = True,
              unlabeled: bool = False) -> Record:
    """Convert one row in format ``fmt``; raises ValueError naming the missing field. ``untyped``:
    the row comes from a file without types (CSV), so a ``label`` may be the text true or false.
    ``answer_lists``: an answer given as a list of texts (TriviaQA) or as SQuAD's ``{text: [...]}``
    is its first text, with the others as alternatives the metric also accepts (off for the json
    metric, whose references are JSON values). ``unlabeled``: an input without an answer (a missing
    or empty answer field, a conversation ending with a user turn) is a record with ``output`` ""
    (training inputs a ``compare:`` model answers, ``distill: missing``).

    >>> to_record({"question": "Where is E-44?"}, "question_answer", unlabeled=True).output
    ''
    """
    if fmt in PAIRED_FORMATS or fmt in UNPAIRED_FORMATS:
        return _preference_record(row, fmt, untyped)
    f = _Fields(row, fmt, answer_lists, unlabeled)
    if fmt in ("alpaca", "dolly"):  # Dolly: instruction, context, response (and a category)
        instruction = f.need("instruction")
        extra = row.get("input" if fmt == "alpaca" else "context")
        text = f"{instruction}\n\n{_text(extra, 'input')}" if extra not in (None, "") else instruction
        return Record(input=text, **f.answer("output" if fmt == "alpaca" else "response"), system=_system(row, "system"))
    if fmt in ("sharegpt", "messages"):
        key = "conversations" if fmt == "sharegpt" else "messages"
        if key not in row:
            have = ", ".join(sorted(map(str, row))[:6]) or "none"
            raise ValueError(f"no '{key}' field (keys here: {have}); is data.format right?")
        role, text = ("from", "value") if fmt == "sharegpt" else ("role", "content")
        return _from_turns(row[key], role, text, key, unlabeled)
    if fmt == "prompt_completion":
        return Record(input=f.need("prompt"), **f.answer("completion"))
    if fmt == "question_answer":
        return Record(input=f.need("question"), **f.answer("answer"))
    if fmt == "columns":
        return Record(input=f.joined(columns.input), **f.answer(columns.output), system=_system(row, columns.system))
    raise ValueError(f"unknown format {fmt!r}")


class _Fields:
    """The fields of one row as texts: ``need`` one, ``joined`` several, an ``answer`` with its
    alternatives; ``data.columns`` may name a dotted path into an object (``answers.text``)."""

    def __init__(self, row: dict, fmt: str, answer_lists: bool, unlabeled: bool = False):
        self.row, self.fmt, self.answer_lists, self.unlabeled = row, fmt, answer_lists, unlabeled

    def value(self, key):
        if key in self.row or self.fmt != "columns" or "." not in key:
            return self.row.get(key)
        node = self.row
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def need(self, key) -> str:
        v = self.value(key)
        if self.fmt == "columns" and key not in self.row and v is None:
            have = ", ".join(sorted(map(str, self.row))) or "none"
            raise ValueError(f"no column '{key}' (columns here: {have})")
        if v is None or (isinstance(v, str) and not has_text(v)):
            raise ValueError(f"missing or empty field '{key}'" + (" (only invisible characters)" if v and v.strip() else ""))
        return _text(v, key)

    def joined(self, keys) -> str:
        """One column's text, or several (a passage and the question), a blank line between."""
        if isinstance(keys, str):
            return self.need(keys)
        values = {k: self.value(k) for k in keys}
        for key, v in values.items():
            if v is None and key not in self.row:
                self.need(key)  # names the missing column
        parts = [_text(v, k) for k, v in values.items() if v is not None and has_text(str(v))]
        if not parts:
            raise ValueError(f"the columns {', '.join(keys)} are all empty")
        return "\n\n".join(parts)

    def answer(self, key) -> dict:
        value = self.value(key)
        if self.unlabeled and (value is None or (isinstance(value, str) and not has_text(value))):
            return {"output": ""}  # an input for the teacher to answer
        texts = _answer_texts(value) if self.answer_lists else None
        if texts is None:
            return {"output": self.need(key)}
        if not texts:
            raise ValueError(f"'{key}' holds no answer text")
        texts = [_text(t, key) for t in texts]
        return {"output": texts[0], "alternatives": list(dict.fromkeys(t for t in texts[1:] if t != texts[0]))}


def _preference_record(row: dict, fmt: str, untyped: bool) -> Record:
    """A preference row: the prompt's turns, the chosen (or judged) answer as ``output``, and the
    rejected answer (paired) or the label (unpaired)."""
    if fmt == "unpaired":
        if isinstance(row.get("messages"), list) and not ("prompt" in row and "completion" in row):
            record = _from_turns(row["messages"], "role", "content", "messages")
        else:
            system, history, text = _prompt(row.get("prompt"), "prompt")
            record = Record(input=text, output=_answer(row, "completion"), system=system, history=history)
        record.label = _label(row.get("label"), untyped)
        return record
    if fmt == "openai_preference":
        given = row.get("input")
        if not isinstance(given, dict) or not isinstance(given.get("messages"), list):
            raise ValueError("'input' must be an object with a list of 'messages'")
        system, history, text = _prompt(given["messages"], "input.messages")
        keys, turn = ("preferred_output", "non_preferred_output"), ("role", "content")
    elif fmt == "sharegpt_preference":
        system, history, text = _prompt(row.get("conversations"), "conversations", "from", "value")
        keys, turn = ("chosen", "rejected"), ("from", "value")
    else:
        implicit = _implicit_prompt(row)
        if implicit is not None:
            system, history, text, chosen, rejected = implicit
            _differ(chosen, rejected, ("chosen", "rejected"))
            return Record(input=text, output=chosen, system=system, history=history, rejected=rejected)
        system, history, text = _prompt(row.get("prompt"), "prompt")
        keys, turn = ("chosen", "rejected"), ("role", "content")
    chosen, rejected = (_answer(row, k, *turn, lists_only=fmt == "openai_preference") for k in keys)
    _differ(chosen, rejected, keys)
    return Record(input=text, output=chosen, system=system, history=history, rejected=rejected)


def _implicit_prompt(row: dict):
    """TRL's implicit-prompt pairs: ``chosen`` and ``rejected`` are whole conversations sharing their
    prompt turns, as message lists (UltraFeedback binarized, whose ``prompt`` repeats the first
    turn) or as Anthropic HH's ``Human:``/``Assistant:`` transcripts. (system, history, the last
    user turn, chosen, rejected); None for answers given apart from their prompt."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if isinstance(chosen, str) and isinstance(rejected, str) and row.get("prompt") is None:
        chosen, rejected = _transcript(chosen, "chosen"), _transcript(rejected, "rejected")
    if not (isinstance(chosen, list) and isinstance(rejected, list)) or max(len(chosen), len(rejected)) < 2:
        return None
    system, a = _messages(chosen, "role", "content", "chosen")
    _, b = _messages(rejected, "role", "content", "rejected")
    if a == b:
        raise ValueError("'chosen' and 'rejected' are the same answer; a preference pair needs two different ones")
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    prompt, answers = a[:shared], (a[shared:], b[shared:])
    if any(len(x) != 1 or x[0]["role"] != "assistant" for x in answers):
        raise ValueError("'chosen' and 'rejected' must share every turn but the last, one assistant answer each")
    if not prompt or prompt[-1]["role"] != "user" or not prompt[-1]["content"].strip():
        raise ValueError("the turns 'chosen' and 'rejected' share must end with a user turn (the prompt)")
    for key, x in zip(("chosen", "rejected"), answers):
        if not x[0]["content"].strip():
            raise ValueError(f"the answer in '{key}' is empty")
    return system, prompt[:-1], prompt[-1]["content"], answers[0][0]["content"], answers[1][0]["content"]


def _prompt(value, where: str, role_key: str = "role", text_key: str = "content") -> tuple[str | None, list[dict], str]:
    """(system prompt, earlier turns, the last user turn) of a prompt given as text or as turns."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"missing or empty field '{where}'")
    if not isinstance(value, list):
        return None, [], _text(value, where)
    system, messages = _messages(value, role_key, text_key, where)
    if not messages or messages[-1]["role"] != "user":
        raise ValueError(f"'{where}' must end with a user turn (the answers are given apart)")
    if not messages[-1]["content"].strip():
        raise ValueError(f"the last user turn in '{where}' is empty")
    return system, messages[:-1], messages[-1]["content"]


def _answer(row: dict, key: str, role_key: str = "role", text_key: str = "content", lists_only: bool = False) -> str:
    """One answer: text, or one assistant turn (alone or in a list of one). ``lists_only``: the
    format (OpenAI's) always writes a list, so anything else is a mistake worth naming."""
    if key not in row:
        raise ValueError(f"missing field '{key}'")
    value = row[key]
    shape = f"a list holding one {{{role_key}: assistant, {text_key}}} message"
    if lists_only and not isinstance(value, list):
        raise ValueError(f"'{key}' must be {shape}, got {type(value).__name__}")
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict):
            got = f"{len(value)} items" if len(value) != 1 else f"a list holding a {type(value[0]).__name__}"
            raise ValueError(f"'{key}' must be {shape}, got {got}")
        value = value[0]
    if isinstance(value, dict):
        if role_key not in value or text_key not in value:
            raise ValueError(f"'{key}' needs '{role_key}' and '{text_key}'")
        if _ROLE.get(str(value[role_key]).lower()) != "assistant":
            raise ValueError(f"'{key}' must be an assistant turn, got {role_key} {value[role_key]!r}")
        value = value[text_key]
    text = _text(value, key, allow_empty=True)
    if not has_text(text):
        raise ValueError(f"'{key}' is empty" + (" (only invisible characters)" if text.strip() else ""))
    return text
