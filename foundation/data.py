"""Loading task data: files → records → train / validation / eval splits, with stats on
formats, sizes and leakage. Readers are in ``foundation.readers``, formats in ``foundation.records``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from foundation.errors import AdviseError
from foundation.paths import display_path
from foundation.readers import read_rows
from foundation.records import KIND_WORDS, Record, data_kind, detect_format, to_record

MIN_EVAL_EXAMPLES = 5  # below this a bootstrap CI says nothing useful
MIN_TRAIN_FOR_VALIDATION = 10  # validation records are held out of this many train records or more


@dataclass
class Splits:
    train: list[Record]
    validation: list[Record]
    eval: list[Record]
    stats: dict
    unlabeled: list[Record] = field(default_factory=list)  # train inputs without an output (distill: missing)

    @property
    def kind(self) -> str:
        """``"sft"``, ``"preference"`` or ``"unpaired"`` (``foundation.records.data_kind``): which
        training objectives the data can feed."""
        return self.stats.get("kind", "sft")


def load_records(path: Path, fmt: str = "auto", columns=None, shown: str | None = None, *,
                 answer_lists: bool = True, unlabeled: bool = False) -> tuple[list[Record], str]:
    """All records of one file and the format they are in (``answer_lists``, ``unlabeled``: see
    ``to_record``; with ``unlabeled`` a row without its answer takes the format of the rows before it)."""
    shown = shown or str(path)
    untyped = path.suffix.lower() in (".csv", ".tsv")  # no booleans there: a label may be the text true / false
    rows = read_rows(path, shown)
    if not rows:
        raise AdviseError("no records", file=shown)
    if columns is not None and fmt == "auto":
        fmt = "columns"
    file_fmt = None if fmt == "auto" else fmt
    records = []
    for line, row in rows:
        row_fmt = fmt
        if fmt == "auto":
            row_fmt = detect_format(row) or (file_fmt if unlabeled else None)
            if row_fmt is None:
                keys = ", ".join(sorted(map(str, row))[:6]) or "none"
                if file_fmt is not None and data_kind(file_fmt) == "sft":
                    raise AdviseError(f"this record is not {file_fmt} like the ones before it (keys: {keys}); an input "
                                      "without its answer belongs in training data only when a compare: endpoint "
                                      "answers it (distill: missing)", file=shown, where=line)
                raise AdviseError(f"unrecognised record format (keys: {keys}); set data.format or data.columns",
                                  file=shown, where=line)
            if file_fmt is None:
                file_fmt = row_fmt
            elif row_fmt != file_fmt:
                raise AdviseError(_mixed(row_fmt, file_fmt), file=shown, where=line)
        try:
            record = to_record(row, row_fmt, columns, untyped=untyped, answer_lists=answer_lists, unlabeled=unlabeled)
        except ValueError as e:
            raise AdviseError(f"{file_fmt} record: {e}", file=shown, where=line) from None
        record.origin = (shown, line)
        records.append(record)
    return records, file_fmt


def _mixed(row_fmt: str, file_fmt: str) -> str:
    """Why a record's format cannot follow the earlier ones; paired and unpaired preference data
    train different objectives, which the format names alone would not say."""
    kinds = (data_kind(row_fmt), data_kind(file_fmt))
    if set(kinds) == {"preference", "unpaired"}:
        this, earlier = ("unpaired", "paired") if kinds[0] == "unpaired" else ("paired", "unpaired")
        return (f"the file mixes paired preference records (prompt/chosen/rejected) and unpaired ones (label): "
                f"this record is {this}, earlier ones are {earlier}; keep one kind per file")
    return f"mixed formats in one file: this record is {row_fmt}, earlier ones are {file_fmt}"


def _read_splits(task, unlabeled_ok: bool) -> tuple[list[Record], list[Record], list[Record], dict]:
    """(train, eval, train inputs without an output, formats) as the files hold them."""
    data, formats = task.data, {}
    lists = {"answer_lists": task.metric.name != "json"}  # a json reference may itself be a list
    if data.file is not None:
        path = task.resolve(data.file)
        records, formats["file"] = load_records(path, data.format, data.columns, display_path(path),
                                                unlabeled=unlabeled_ok, **lists)
        unlabeled = [r for r in records if not r.output]
        records = [r for r in records if r.output]
        order = list(range(len(records)))
        random.Random(task.seed).shuffle(order)
        n_eval = max(1, round(len(records) * data.eval_fraction))
        return [records[i] for i in order[n_eval:]], [records[i] for i in order[:n_eval]], unlabeled, formats
    train, formats["train"] = load_records(task.resolve(data.train), data.format, data.columns,
                                           display_path(task.resolve(data.train)), unlabeled=unlabeled_ok, **lists)
    eval_recs, formats["eval"] = load_records(task.resolve(data.eval), data.format, data.columns,
                                              display_path(task.resolve(data.eval)), **lists)
    _check_same_kind(task, formats)
    return [r for r in train if r.output], eval_recs, [r for r in train if not r.output], formats


def load_splits(task) -> Splits:
    """Train / validation / eval records for a task, with stats on formats, the data kind
    (``Splits.kind``), sizes and leakage."""
    data = task.data
    shown_task = display_path(task.source_path) if task.source_path else "task.yaml"
    # distill: missing: training inputs without an output are the teacher's to answer (never eval's)
    unlabeled_ok = any(getattr(m, "distill", "off") == "missing" for m in getattr(task, "compare", []) or [])
    train, eval_recs, unlabeled, formats = _read_splits(task, unlabeled_ok)
    if data.max_eval:
        eval_recs = eval_recs[: data.max_eval]
    if data.max_train:
        train = train[: data.max_train]
    if len(eval_recs) < MIN_EVAL_EXAMPLES:
        where = "data.max_eval" if data.max_eval and data.max_eval < MIN_EVAL_EXAMPLES else (
            "data.eval" if data.file is None else "data.eval_fraction")
        raise AdviseError(f"the eval split has {len(eval_recs)} records; a confidence interval needs at least "
                          f"{MIN_EVAL_EXAMPLES}", file=shown_task, where=where)
    if not train:
        where = "data.eval_fraction" if data.file is not None else ("data.max_train" if data.max_train else "data.train")
        raise AdviseError("the train split is empty" + (
            f" of records with an output ({len(unlabeled)} without one, for distill: missing): the pilot, few-shot "
            "prompts and validation need some with" if unlabeled else ""), file=shown_task, where=where)
    check_references(task, train + eval_recs, shown_task)
    train_keys = {r.key() for r in train}
    leaked = [r for r in eval_recs if r.key() in train_keys]
    val = []
    if data.validation_fraction > 0 and len(train) >= MIN_TRAIN_FOR_VALIDATION:
        order = list(range(len(train)))
        random.Random(task.seed + 1).shuffle(order)
        n_val = max(2, round(len(train) * data.validation_fraction))
        if n_val >= len(train):
            raise AdviseError(f"data.validation_fraction {data.validation_fraction:g} of {len(train)} train records "
                              "leaves none to train on", file=shown_task, where="data.validation_fraction")
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    stats = {
        "formats": formats,
        "kind": data_kind(next(iter(formats.values()))),
        "sizes": {"train": len(train), "validation": len(val), "eval": len(eval_recs),
                  **({"unlabeled": len(unlabeled)} if unlabeled_ok else {})},
        "leakage": {"train_eval_duplicates": len(leaked),
                    "examples": [r.input[:120] for r in leaked[:5]]},
    }
    return Splits(train=train, validation=val, eval=eval_recs, stats=stats, unlabeled=unlabeled)


def _check_same_kind(task, formats: dict) -> None:
    """Train and eval must feed the same objectives: a preference model is scored on pairs."""
    train_kind, eval_kind = data_kind(formats["train"]), data_kind(formats["eval"])
    if train_kind != eval_kind:
        raise AdviseError(f"this file holds {KIND_WORDS[eval_kind]} but {display_path(task.resolve(task.data.train))} "
                          f"holds {KIND_WORDS[train_kind]}; train and eval must be the same kind",
                          file=display_path(task.resolve(task.data.eval)))


def check_references(task, records: list[Record], shown_task: str) -> None:
    """References the metric can never match are data errors, not zero scores (the metric's own check)."""
    from foundation.metrics import check_reference

    for r in records:
        if r.label is False:  # an undesirable answer (unpaired data) is not a reference to match
            continue
        r.alternatives = [a for a in r.alternatives if not check_reference(task.metric, a)]  # extras may go
        problem = check_reference(task.metric, r.output)
        if problem:
            file, line = r.origin or (shown_task, "metric")
            raise AdviseError(problem, file=file, where=line)
