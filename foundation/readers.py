"""Data files → rows, each with where it came from (line, item or row number) for error messages.

Supported files: .jsonl, .json (a list of objects, or JSON Lines), .csv, .tsv, .parquet.
"""
from __future__ import annotations

import json
from pathlib import Path

from foundation.errors import AdviseError
from foundation.paths import check_regular_file, read_text


def read_rows(path: Path, shown: str | None = None) -> list[tuple[int | str, dict]]:
    """Rows of a data file with where each came from: line number (jsonl, csv), ``item N`` (json)
    or ``row N`` (parquet), counted from 1."""
    shown = shown or str(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        check_regular_file(path, shown)
        return _read_parquet(path, shown)
    if suffix not in (".jsonl", ".json", ".csv", ".tsv"):
        raise AdviseError(f"unsupported file type {suffix!r}; use .jsonl, .json, .csv, .tsv or .parquet", file=shown)
    text = read_text(path, shown)
    if suffix == ".jsonl":
        return _json_lines(text, shown)
    if suffix == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg == "Extra data" and text.lstrip().startswith("{"):
                return _json_lines(text, shown)  # JSON Lines named .json, as datasets' to_json writes it
            obj = _json(text, shown, None)
        except (RecursionError, ValueError):
            obj = _json(text, shown, None)
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            obj = obj["data"]
        if not isinstance(obj, list):
            raise AdviseError("expected a JSON list of records (or one JSON object per line)", file=shown)
        for i, item in enumerate(obj, 1):
            if not isinstance(item, dict):
                raise AdviseError(f"expected a JSON object, got {type(item).__name__}", file=shown, where=f"item {i}")
        return [(f"item {i}", item) for i, item in enumerate(obj, 1)]
    # .csv or .tsv
    import csv
    import io

    # newline="": lines end at \n, \r\n or a classic-Mac \r alone, and a quoted value keeps its own
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
    rows = []
    try:
        header = reader.fieldnames or []
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:
            raise AdviseError(f"column {twice[0]!r} appears more than once in the header", file=shown, where=1)
        for row in reader:
            if None in row:
                raise AdviseError("more values than header columns", file=shown, where=reader.line_num)
            rows.append((reader.line_num, {k: v for k, v in row.items()}))
    except csv.Error as e:
        raise AdviseError(f"malformed CSV: {e}", file=shown, where=max(1, reader.line_num)) from None
    return rows


def _json_lines(text: str, shown: str) -> list[tuple[int, dict]]:
    rows = []
    # Lines end at \n only: U+2028, U+2029 and U+0085 may stand raw inside a JSON string.
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        obj = _json(line, shown, n)
        if not isinstance(obj, dict):
            raise AdviseError(f"expected a JSON object, got {type(obj).__name__}", file=shown, where=n)
        rows.append((n, obj))
    return rows


def _json(text: str, shown: str, line: int | None):
    """One JSON document; errors name the line (``line`` for a jsonl row, else the parser's)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AdviseError(f"invalid JSON: {e.msg}", file=shown, where=line or e.lineno) from None
    except RecursionError:
        raise AdviseError("invalid JSON: nested too deeply", file=shown, where=line) from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise AdviseError(f"invalid JSON: {str(e).splitlines()[0]}", file=shown, where=line) from None


def _read_parquet(path: Path, shown: str) -> list[tuple[int, dict]]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise AdviseError(f"cannot read parquet: {e}", file=shown) from None
    return [(f"row {i}", row) for i, row in enumerate(table.to_pylist(), 1)]


