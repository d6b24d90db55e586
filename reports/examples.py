"""Before/after examples from the predictions files each candidate wrote."""
from __future__ import annotations

import json
from pathlib import Path

from foundation.results import CandidateResult, Results
from reports.format import cut_text
from reports.view import Answer, Example

MAX_EXAMPLES = 6


def _read_predictions(path: Path) -> dict[int, dict]:
    rows = {}
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            rows[int(row.get("index", i))] = row
    return rows


def pick_examples(results: Results, run_dir: Path, winner: CandidateResult | None) -> tuple[tuple[Example, ...], str]:
    """Before/after examples: the same eval questions answered by every candidate, picked where they
    disagree (mostly where the recommendation helps, honestly also where it does worse)."""
    loaded: dict[str, dict[int, dict]] = {}
    missing = []
    for c in results.candidates:
        try:
            loaded[c.name] = _read_predictions(run_dir / c.predictions_file)
        except (OSError, ValueError, TypeError):
            missing.append(c.name)
    note = f"Predictions not found for: {', '.join(missing)}." if missing else ""
    if len(loaded) < 2:
        return (), (note + " Before/after examples need the predictions of at least two candidates.").strip()
    names = [c.name for c in results.candidates if c.name in loaded]
    scores_of = {c.name: c.scores for c in results.candidates}
    common = sorted(set.intersection(*(set(rows) for rows in loaded.values())))

    def scores(i: int) -> dict[str, float]:
        out = {}
        for n in names:
            value = loaded[n][i].get("score")
            if value is None and i < len(scores_of[n]):
                value = scores_of[n][i]
            out[n] = float(value or 0.0)
        return out

    focus = winner.name if winner is not None and winner.name in loaded else names[-1]
    better, worse, other = _groups(common, names, focus, scores, loaded)
    same = not (better or worse or other)
    if same:  # every option answered alike: show a few anyway, so the reader sees what they say
        other = [(0.0, i) for i in common[:3]]
    picked = better[: MAX_EXAMPLES - min(2, len(worse))]
    picked += worse[: MAX_EXAMPLES - len(picked)]
    picked += other[: MAX_EXAMPLES - len(picked)]
    order = {i: k for k, (_, i) in enumerate(better + worse + other)}
    examples = []
    for i in sorted((i for _, i in picked), key=order.get):
        s, first = scores(i), loaded[names[0]][i]
        examples.append(Example(
            index=i, input=cut_text(first.get("input")), reference=cut_text(first.get("reference")),
            answers=tuple(Answer(n, cut_text(loaded[n][i].get("prediction")), s[n], n == focus) for n in names),
            why=_why(s, names, focus, same)))
    if same and not note:
        note = "Every option gave the same answer on every example; the first few are shown."
    return tuple(examples), note


def _groups(common, names, focus, scores, loaded):
    """Examples where ``focus`` scores better, worse, or differs only in wording; widest spread first."""
    better, worse, other = [], [], []
    for i in common:
        s = scores(i)
        spread = max(s.values()) - min(s.values())
        if spread > 0:
            rest = max(v for n, v in s.items() if n != focus)
            (better if s[focus] > rest else worse if s[focus] < rest else other).append((-spread, i))
        elif len({str(loaded[n][i].get("prediction", "")).strip() for n in names}) > 1:
            other.append((0.0, i))
    return sorted(better), sorted(worse), sorted(other)


def _why(s: dict[str, float], names: list[str], focus: str, same: bool) -> str:
    top = max(s.values())
    leaders = [n for n in names if s[n] == top]
    if same:
        return "Every option gives the same answer here."
    if len(leaders) == len(names):
        return "All score the same; the answers differ in wording."
    if focus in leaders:
        return f"{focus} does better here." if len(leaders) > 1 else f"Only {focus} gets the top score here."
    return f"{focus} does worse here than {', '.join(leaders)}."
