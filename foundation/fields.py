"""One field of a data row as what a record holds: text (never a NaN, bytes or a lone surrogate),
an answer's alternatives, a Human:/Assistant: transcript's turns, KTO's label, and the check that
a preference pair's two answers differ. ``foundation.records`` builds records from these."""
from __future__ import annotations

import json
import math
import re

from foundation.corpus import has_text


def text(value, key: str, allow_empty: bool = False) -> str:
    """A field as text: numbers and booleans as written, lists and objects as JSON; lone surrogates
    (invalid UTF-16 halves that a JSON file can spell as \\ud800) are refused."""
    if value is None:
        if allow_empty:
            return ""
        raise ValueError(f"'{key}' is empty")
    if isinstance(value, bytes):
        raise ValueError(f"'{key}' holds bytes, not text")
    if isinstance(value, float) and not math.isfinite(value):  # JSON Lines' NaN, a parquet null read as NaN
        raise ValueError(f"'{key}' is {value} (an empty cell?), not text")
    text = json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (dict, list)) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"'{key}' holds an invalid character at position {e.start} (a lone surrogate)") from None
    return text


def answer_texts(value) -> list | None:
    """The answer texts of a list of texts or of SQuAD's ``{"text": [...], "answer_start": [...]}``;
    None for anything else (one text, or a JSON value that is itself the answer)."""
    if isinstance(value, dict) and "text" in value:
        value = value["text"]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return [value] if str(value).strip() else []
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return [v for v in value if str(v).strip()]
    return None


def differ(chosen: str, rejected: str, keys) -> None:
    """A pair's two answers differ in more than spacing (and invisible characters)."""
    def visible(text: str) -> str:
        return " ".join("".join(c for c in text if has_text(c) or c.isspace()).split())

    if visible(chosen) == visible(rejected):
        raise ValueError(f"'{keys[0]}' and '{keys[1]}' are the same answer; a preference pair needs two different ones")


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def transcript(text: str, key: str) -> list[dict]:
    """An Anthropic HH transcript ("\n\nHuman: …\n\nAssistant: …") as turns."""
    parts = _HH_TURN.split(text if text.startswith("\n\n") else "\n\n" + text.lstrip())
    if parts[0].strip() or len(parts) < 5:
        raise ValueError(f"no 'prompt' field, and '{key}' is not a Human:/Assistant: transcript; give the prompt "
                         "in 'prompt' (TRL's prompt/chosen/rejected)")
    return [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
            for who, said in zip(parts[1::2], parts[2::2])]


def label(value, untyped: bool) -> bool:
    """KTO's label: a boolean; CSV has no booleans, so there the text true / false counts."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        if untyped:
            return value.strip().lower() == "true"
        hint = " (a JSON string: write true or false without quotes)"
    else:
        hint = ""
    shown = "nothing" if value is None else json.dumps(value, ensure_ascii=False)[:40]
    raise ValueError(f"'label' must be true or false (is the completion a desirable answer?), got {shown}{hint}")
