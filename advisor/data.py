"""Loading task data: files → records → train / validation / eval splits.

Supported files: .jsonl, .json (a list of objects), .csv, .parquet. Record formats are
detected per record and must agree within a file:

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
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from advisor.errors import AdviseError

MIN_EVAL_EXAMPLES = 5  # below this a bootstrap CI says nothing useful


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


@dataclass
class Splits:
    train: list[Record]
    validation: list[Record]
    eval: list[Record]
    stats: dict


# ---------------------------------------------------------------- file readers

def read_rows(path: Path, shown: str | None = None) -> list[tuple[int | str, dict]]:
    """Rows of a data file with where each came from: line number (jsonl, csv), ``item N`` (json)
    or ``row N`` (parquet), counted from 1."""
    shown = shown or str(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path, shown)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AdviseError(f"cannot read: {e.strerror}", file=shown) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise AdviseError(f"not valid UTF-8 (byte {e.start})", file=shown, where=line) from None
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise AdviseError(f"invalid JSON: {e.msg}", file=shown, where=n) from None
            if not isinstance(obj, dict):
                raise AdviseError(f"expected a JSON object, got {type(obj).__name__}", file=shown, where=n)
            rows.append((n, obj))
        return rows
    if suffix == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise AdviseError(f"invalid JSON: {e.msg}", file=shown, where=e.lineno) from None
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            obj = obj["data"]
        if not isinstance(obj, list):
            raise AdviseError("expected a JSON list of records", file=shown)
        for i, item in enumerate(obj, 1):
            if not isinstance(item, dict):
                raise AdviseError(f"expected a JSON object, got {type(item).__name__}", file=shown, where=f"item {i}")
        return [(f"item {i}", item) for i, item in enumerate(obj, 1)]
    if suffix == ".csv":
        import csv
        import io

        reader = csv.DictReader(io.StringIO(text))
        rows = []
        try:
            for row in reader:
                if None in row:
                    raise AdviseError("more values than header columns", file=shown, where=reader.line_num)
                rows.append((reader.line_num, {k: v for k, v in row.items()}))
        except csv.Error as e:
            raise AdviseError(f"malformed CSV: {e}", file=shown, where=reader.line_num) from None
        return rows
    raise AdviseError(f"unsupported file type {suffix!r}; use .jsonl, .json, .csv or .parquet", file=shown)


def _read_parquet(path: Path, shown: str) -> list[tuple[int, dict]]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise AdviseError(f"cannot read parquet: {e}", file=shown) from None
    return [(f"row {i}", row) for i, row in enumerate(table.to_pylist(), 1)]


# ---------------------------------------------------------------- formats

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


def load_records(path: Path, fmt: str = "auto", columns=None, shown: str | None = None) -> tuple[list[Record], str]:
    """All records of one file and the format they are in."""
    shown = shown or str(path)
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
            row_fmt = detect_format(row)
            if row_fmt is None:
                keys = ", ".join(sorted(map(str, row))[:6]) or "none"
                raise AdviseError(f"unrecognised record format (keys: {keys}); set data.format or data.columns",
                                  file=shown, where=line)
            if file_fmt is None:
                file_fmt = row_fmt
            elif row_fmt != file_fmt:
                raise AdviseError(f"mixed formats in one file: this record is {row_fmt}, earlier ones are {file_fmt}",
                                  file=shown, where=line)
        try:
            record = to_record(row, row_fmt, columns)
        except ValueError as e:
            raise AdviseError(f"{file_fmt} record: {e}", file=shown, where=line) from None
        record.origin = (shown, line)
        records.append(record)
    return records, file_fmt


def load_splits(task) -> Splits:
    """Train / validation / eval records for a task, with stats on formats, sizes and leakage."""
    data = task.data
    shown_task = display_path(task.source_path) if task.source_path else "task.yaml"
    rng = random.Random(task.seed)
    formats = {}
    if data.file is not None:
        path = task.resolve(data.file)
        records, formats["file"] = load_records(path, data.format, data.columns, display_path(path))
        order = list(range(len(records)))
        rng.shuffle(order)
        n_eval = max(1, round(len(records) * data.eval_fraction))
        eval_recs = [records[i] for i in order[:n_eval]]
        train = [records[i] for i in order[n_eval:]]
    else:
        train, formats["train"] = load_records(task.resolve(data.train), data.format, data.columns,
                                               display_path(task.resolve(data.train)))
        eval_recs, formats["eval"] = load_records(task.resolve(data.eval), data.format, data.columns,
                                                  display_path(task.resolve(data.eval)))
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
        raise AdviseError("the train split is empty", file=shown_task, where=where)
    check_references(task, train + eval_recs, shown_task)
    eval_keys = {r.key() for r in eval_recs}
    leaked = [r for r in train if r.key() in eval_keys]
    val = []
    if data.validation_fraction > 0 and len(train) >= 10:
        order = list(range(len(train)))
        random.Random(task.seed + 1).shuffle(order)
        n_val = max(2, round(len(train) * data.validation_fraction))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    stats = {
        "formats": formats,
        "sizes": {"train": len(train), "validation": len(val), "eval": len(eval_recs)},
        "leakage": {"train_eval_duplicates": len(leaked),
                    "examples": [r.input[:120] for r in leaked[:5]]},
    }
    return Splits(train=train, validation=val, eval=eval_recs, stats=stats)


def check_references(task, records: list[Record], shown_task: str) -> None:
    """References the metric can never match are data errors, not zero scores."""
    from advisor.metrics import _parse_json, normalize

    metric = task.metric
    if metric.name == "accuracy":
        labels = {normalize(l) for l in metric.labels}
        for r in records:
            if normalize(r.output) not in labels:
                file, line = r.origin or (shown_task, "metric.labels")
                raise AdviseError(f"reference {r.output!r} is not one of metric.labels", file=file, where=line)
    if metric.name == "json":
        for r in records:
            if not isinstance(_parse_json(r.output), dict):
                file, line = r.origin or (shown_task, "metric")
                raise AdviseError("metric json needs references that are JSON objects; this one is not",
                                  file=file, where=line)


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- corpus

CORPUS_SUFFIXES = (".md", ".txt", ".jsonl")


@dataclass
class Document:
    source: str
    text: str


def load_corpus(task) -> list[Document]:
    """Documents from the corpus files and folders; errors name the offending file."""
    shown_task = display_path(task.source_path) if task.source_path else "task.yaml"
    files: list[Path] = []
    for i, p in enumerate(task.corpus.paths):
        full = task.resolve(p)
        if full.is_dir():
            files.extend(sorted(f for f in full.rglob("*") if f.is_file() and f.suffix.lower() in CORPUS_SUFFIXES))
        else:
            if full.suffix.lower() not in CORPUS_SUFFIXES:
                raise AdviseError(f"unsupported corpus file {full.name}; use .md, .txt or .jsonl", file=shown_task,
                                  where=f"corpus.paths.{i}")
            files.append(full)
    docs = []
    for f in files:
        if f.suffix.lower() == ".jsonl":
            for line, row in read_rows(f, display_path(f)):
                value = row.get(task.corpus.jsonl_text_field)
                if not isinstance(value, str):
                    raise AdviseError(f"no text field '{task.corpus.jsonl_text_field}'", file=display_path(f), where=line)
                if value.strip():
                    docs.append(Document(f"{f.name}:{line}", value))
        else:
            try:
                text = f.read_bytes().decode("utf-8-sig")
            except UnicodeDecodeError as e:
                line = f.read_bytes()[: e.start].count(b"\n") + 1
                raise AdviseError(f"not valid UTF-8 (byte {e.start})", file=display_path(f), where=line) from None
            if text.strip():
                docs.append(Document(f.name, text))
    if task.corpus.paths and not docs:
        raise AdviseError("the corpus has no readable text (.md, .txt or .jsonl files)", file=shown_task,
                          where="corpus.paths")
    return docs
