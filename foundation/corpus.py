"""The RAG corpus: files and folders of .md, .txt and .jsonl → documents."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import AdviseError
from foundation.paths import display_path, read_text, walk_files
from foundation.readers import read_rows

CORPUS_SUFFIXES = (".md", ".txt", ".jsonl")


@dataclass
class Document:
    source: str
    text: str


def has_text(text: str) -> bool:
    r"""Whether ``text`` holds a visible character: not only spaces, zero-width or control ones
    (U+200B, U+FEFF, a soft hyphen), which the embedder's tokenizer drops.

    >>> has_text("\u200b\ufeff \n"), has_text("ok")
    (False, True)
    """
    return any(not c.isspace() and unicodedata.category(c)[0] not in "CZ" for c in text)


def load_corpus(task, skipped: list[Path] | None = None) -> list[Document]:
    """Documents from the corpus files and folders; errors name the offending file. Files in a
    corpus folder that are not .md, .txt or .jsonl go to ``skipped`` when given (validate warns).
    A document's source is its path under the corpus folder it was found in."""
    shown_task = display_path(task.source_path) if task.source_path else "task.yaml"
    files: list[tuple[Path, str]] = []
    for i, p in enumerate(task.corpus.paths):
        full = task.resolve(p)
        if full.is_dir():
            found = walk_files(full, CORPUS_SUFFIXES, task_file=shown_task, where=f"corpus.paths.{i}", skipped=skipped)
            files.extend((f, f.relative_to(full).as_posix()) for f in found)
        else:
            if full.suffix.lower() not in CORPUS_SUFFIXES:
                raise AdviseError(f"unsupported corpus file {full.name}; use .md, .txt or .jsonl", file=shown_task,
                                  where=f"corpus.paths.{i}")
            files.append((full, full.name))
    docs = []
    for f, source in files:
        if f.suffix.lower() == ".jsonl":
            for line, row in read_rows(f, display_path(f)):
                value = row.get(task.corpus.jsonl_text_field)
                if not isinstance(value, str):
                    raise AdviseError(f"no text field '{task.corpus.jsonl_text_field}'", file=display_path(f), where=line)
                if has_text(value):
                    docs.append(Document(f"{source}:{line}", value))
        else:
            shown = display_path(f)
            text = read_text(f, shown)
            if "\x00" in text:
                raise AdviseError("holds NUL bytes: a binary file, not text", file=shown,
                                  where=text[: text.index("\x00")].count("\n") + 1)
            if has_text(text):
                docs.append(Document(source, text))
    if task.corpus.paths and not docs:
        raise AdviseError("the corpus has no readable text (.md, .txt or .jsonl files)", file=shown_task,
                          where="corpus.paths")
    return docs
