"""How likely a model finds an answer after a prompt, and what that says on preference data.

Preference accuracy is the share of eval pairs where the model gives the chosen answer a higher
mean log-probability per answer token than the rejected one; the mean (not the sum) keeps a
long answer from losing only for having more tokens. For unpaired (KTO) data there is no
partner answer, so an answer counts as preferred when it lies above the set's mean and the
score is whether that agrees with its label. Pure torch + transformers, so a baseline, a trial
and a test score a model (or a PEFT adapter on it) the same way.

>>> pair_scores([-1.0, -2.0, -3.0], [-2.0, -2.0, -1.0])
([1.0, 0.5, 0.0], [1.0, 0.0, -2.0])
"""
from __future__ import annotations

from foundation.records import Record

LOGITS_BUDGET = 1 << 25  # logits computed in one piece, in elements (128 MB in float32)


def answer_logprobs(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 8,
                    logits_budget: int = LOGITS_BUDGET) -> list[float]:
    """Mean log-probability per answer token of each answer after its rendered prompt (length-normalised).

    ``prompts`` are rendered chat prompts ending with the assistant header
    (``foundation.generation.task_prompts``); each answer is scored with the end-of-turn token
    after it, since stopping is part of the answer. Batches are right-padded with an attention
    mask, so padding changes no score; similar lengths share a batch to keep padding small.
    A batch whose logits would pass ``logits_budget`` elements (a 15k-token answer over a 49k-token
    vocabulary is 3 GB in float32) is scored from the last hidden states, the output layer applied
    to a slice of positions at a time.
    """
    import torch

    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    pairs = [_token_ids(tokenizer, p, a) for p, a in zip(prompts, answers)]
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    pad_id = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0)
    device = next(model.parameters()).device
    scores = [0.0] * len(pairs)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                for i, lp in zip(batch, _batch_logprobs(model, [pairs[i] for i in batch], pad_id, device,
                                                        logits_budget)):
                    scores[i] = lp
    finally:
        if was_training:
            model.train()
    return scores


def _token_ids(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    if not prompt_ids:
        raise ValueError("an empty prompt: the first answer token would have nothing to follow")
    if not answer_ids:
        raise ValueError("an empty answer and no end-of-turn token: nothing to score")
    return prompt_ids, answer_ids


def _batch_logprobs(model, pairs: list[tuple[list[int], list[int]]], pad_id: int, device,
                    logits_budget: int = LOGITS_BUDGET) -> list[float]:
    import torch

    width = max(len(p) + len(a) for p, a in pairs)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (p, a) in enumerate(pairs):
        input_ids[row, :len(p) + len(a)] = torch.tensor(p + a)
        mask[row, :len(p) + len(a)] = 1
    inputs = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "use_cache": False}
    head = model.get_output_embeddings()
    if head is not None and len(pairs) * width * head.weight.shape[0] > logits_budget:
        return _chunked_logprobs(model, head, inputs, pairs, width, logits_budget)
    logits = model(**inputs).logits
    # Prompt-learning adapters (prompt tuning, P-tuning) prepend virtual tokens to the logits.
    logits = logits[:, -width:]
    means = []
    for row, (p, a) in enumerate(pairs):
        # The token at position t is predicted by the logits at t - 1.
        predicting = logits[row, len(p) - 1:len(p) - 1 + len(a)].float()
        targets = torch.tensor(a, device=predicting.device).unsqueeze(-1)
        means.append(torch.log_softmax(predicting, dim=-1).gather(-1, targets).mean().item())
    return means


def _chunked_logprobs(model, head, inputs: dict, pairs, width: int, logits_budget: int) -> list[float]:
    """The same means from the last hidden states (the output layer's input), with the output layer
    applied to at most ``logits_budget`` elements of logits at a time."""
    import torch

    try:  # only the last position's logits: the answer's come from the hidden states below
        out = model(**inputs, output_hidden_states=True, logits_to_keep=1)
    except TypeError:  # a model without logits_to_keep
        out = model(**inputs, output_hidden_states=True)
    hidden = out.hidden_states[-1][:, -width:]  # prompt-learning adapters prepend virtual tokens
    cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    step = max(1, logits_budget // head.weight.shape[0])
    means = []
    for row, (p, a) in enumerate(pairs):
        total = 0.0
        for s in range(0, len(a), step):
            logits = head(hidden[row, len(p) - 1 + s:len(p) - 1 + min(s + step, len(a))]).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            targets = torch.tensor(a[s:s + step], device=logits.device).unsqueeze(-1)
            total += torch.log_softmax(logits, dim=-1).gather(-1, targets).sum().item()
        means.append(total / len(a))
    return means


def pair_scores(chosen_lp: list[float], rejected_lp: list[float]) -> tuple[list[float], list[float]]:
    """(per-pair score: 1.0 if chosen > rejected, 0.5 if equal, else 0.0; margins chosen - rejected).

    A tie is half right: the model has no preference, and a coin would be right half the time.
    """
    if len(chosen_lp) != len(rejected_lp):
        raise ValueError(f"{len(chosen_lp)} chosen but {len(rejected_lp)} rejected log-probabilities")
    scores = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen_lp, rejected_lp)]
    return scores, [c - r for c, r in zip(chosen_lp, rejected_lp)]


def sign_scores(lps: list[float], labels: list[bool]) -> tuple[list[float], list[float]]:
    """Unpaired data: threshold = mean of lps over the set; score 1.0 if (lp > threshold) == label else 0.0;
    margin = (lp - threshold) if label else (threshold - lp).

    The mean stands in for the missing partner answer: log-probabilities have no fixed scale
    across prompts and models, so only where an answer lies within the set says anything.

    >>> sign_scores([-1.0, -3.0], [True, True])
    ([1.0, 0.0], [1.0, -1.0])
    """
    if len(lps) != len(labels):
        raise ValueError(f"{len(lps)} log-probabilities but {len(labels)} labels")
    if not lps:
        return [], []
    threshold = sum(lps) / len(lps)
    scores = [1.0 if (lp > threshold) == label else 0.0 for lp, label in zip(lps, labels)]
    margins = [(lp - threshold) if label else (threshold - lp) for lp, label in zip(lps, labels)]
    return scores, margins


def preference_scores(model, tokenizer, prompts: list[str], records: list[Record],
                      batch_size: int = 8) -> tuple[list[float], list[float]]:
    """(scores, margins) for eval records: paired records (record.rejected set) by pair_scores,
    unpaired (record.label set) by sign_scores (the threshold is the mean over the unpaired ones).

    Every answer (chosen, rejected, unpaired) goes through one :func:`answer_logprobs` call, so
    they share batches. A record that is neither paired nor unpaired is a ValueError: it has
    nothing to prefer.
    """
    if len(prompts) != len(records):
        raise ValueError(f"{len(prompts)} prompts but {len(records)} records")
    paired = [i for i, r in enumerate(records) if r.rejected is not None]
    unpaired = [i for i, r in enumerate(records) if r.rejected is None and r.label is not None]
    if len(paired) + len(unpaired) != len(records):
        first = next(i for i, r in enumerate(records) if r.rejected is None and r.label is None)
        raise ValueError(f"record {first} has neither a rejected answer nor a label: not preference data")
    answers = ([records[i].output for i in paired] + [records[i].rejected for i in paired]
               + [records[i].output for i in unpaired])
    lps = answer_logprobs(model, tokenizer, [prompts[i] for i in paired + paired + unpaired], answers, batch_size)
    n = len(paired)
    scores, margins = [0.0] * len(records), [0.0] * len(records)
    for i, score, margin in zip(paired, *pair_scores(lps[:n], lps[n:2 * n])):
        scores[i], margins[i] = score, margin
    for i, score, margin in zip(unpaired, *sign_scores(lps[2 * n:], [records[i].label for i in unpaired])):
        scores[i], margins[i] = score, margin
    return scores, margins
