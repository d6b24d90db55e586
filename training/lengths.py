"""Training sequence length, from the data: how long each formatted training record is (chat
template, system prompt, question and answer), what a length limit would cut, and the limit to
use when the task sets none.

TRL truncates a record to ``max_length`` from the end: a record whose prompt fits but whose answer
does not loses the end of its answer (*truncated*); a record whose prompt alone fills the limit has
no answer token left and is dropped (*dropped*). A task whose records are all dropped would train
on nothing, so that is an error before any model is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass

from foundation.errors import AdviseError
from foundation.generation import task_messages

MEMORY_CAP = 4096  # a derived length never exceeds this: longer records are truncated and reported
ROUND_TO = 8  # derived lengths are a multiple of this (tensor-core friendly shapes)


@dataclass(frozen=True)
class LengthFit:
    """What a sequence length does to the training records."""

    max_seq_length: int
    derived: bool  # chosen from the data (the task set no length)
    records: int
    truncated: int  # the answer is cut short
    dropped: int  # no answer token fits: the record is not trained on
    longest: int  # tokens of the longest record, prompt and answer
    shortest_prompt: int

    def describe(self, key: str) -> str:
        source = "from the data" if self.derived else f"set by {key}"
        text = f"sequence length {self.max_seq_length} ({source}; longest record {self.longest} tokens)"
        if self.truncated or self.dropped:
            text += (f": {self.truncated} of {self.records} training records have their answer cut short and "
                     f"{self.dropped} are dropped (no answer token fits)")
        return text


def record_token_lengths(tokenizer, prompt, records, messages_for=None) -> list[tuple[int, int]]:
    """(prompt tokens, prompt + answer tokens) of each record, formatted as training formats it
    (``messages_for(record)``: the prompt messages, when not the task's own)."""
    out = []
    for r in records:
        messages = messages_for(r) if messages_for else task_messages(prompt, r)
        prompt_ids = _ids(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True))
        longest = max(len(_ids(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}],
                                                             tokenize=True)))
                      for answer in (r.output, r.rejected) if answer is not None)  # DPO trains on both answers
        out.append((len(prompt_ids), max(longest, len(prompt_ids) + 1)))
    return out


def _ids(encoded) -> list[int]:
    return encoded["input_ids"] if hasattr(encoded, "keys") else encoded


def fit_length(lengths: list[tuple[int, int]], configured: int | None, model_max: int | None = None,
               cap: int = MEMORY_CAP) -> LengthFit:
    """The sequence length to train with and what it cuts.

    >>> fit_length([(10, 14), (300, 320)], None).max_seq_length
    320
    >>> fit_length([(10, 14), (300, 320)], 128).dropped
    1
    """
    limit = min(cap, model_max) if model_max else cap
    if configured is None:
        longest = max((full for _, full in lengths), default=ROUND_TO)
        length, derived = min(limit, -(-longest // ROUND_TO) * ROUND_TO), True
    else:
        length, derived = configured, False
    return LengthFit(
        max_seq_length=length, derived=derived, records=len(lengths),
        truncated=sum(1 for p, full in lengths if p < length < full),
        dropped=sum(1 for p, _ in lengths if p >= length),
        longest=max((full for _, full in lengths), default=0),
        shortest_prompt=min((p for p, _ in lengths), default=0))


def model_max_length(config) -> int | None:
    """The model's context window, when its config says (``max_position_embeddings``)."""
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


class NothingToLearn(AdviseError):
    """Every training record is cut before its answer at the training length (``.fit`` says how)."""

    def __init__(self, message: str, fit: LengthFit, where: str):
        super().__init__(message, where=where)
        self.fit = fit


def training_length(lengths: list[tuple[int, int]], configured: int | None, model_config, key: str) -> LengthFit:
    """The length to train with (``configured``, or derived from the record ``lengths`` of
    :func:`record_token_lengths`); :class:`NothingToLearn` at ``key`` when not one record keeps an
    answer token."""
    fit = fit_length(lengths, configured, model_max_length(model_config))
    if fit.records and fit.dropped == fit.records:
        if fit.derived:
            raise NothingToLearn(f"every training prompt is longer than the {fit.max_seq_length}-token training limit "
                              f"(the shortest takes {fit.shortest_prompt} tokens with the chat template and "
                              "prompt.system): shorten the system prompt or the inputs", fit, key)
        raise NothingToLearn(f"all {fit.records} training records are longer than {fit.max_seq_length} tokens before "
                          f"their answer (the shortest prompt takes {fit.shortest_prompt} tokens with the chat "
                          f"template and prompt.system), so nothing would be learned; raise {key} to at least "
                          f"{fit.longest} or leave it unset to fit the data", fit, key)
    return fit
