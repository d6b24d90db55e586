"""A run directory's files into the database, as they change.

The main job (and the finalize job) own results.json, report.html, trials.csv, predictions and the
best adapter; a job that joins a study only adds the adapters of the trials it trained (trial
numbers are unique across workers, so nothing is written twice). The RAG index and the SQLite
side files are not copied: they are rebuilt from the task when needed.
"""
from __future__ import annotations

import logging
from pathlib import Path

from foundation.secrets import redact

log = logging.getLogger("advise.service")
NOT_COPIED = ("rag/",)


def wanted(rel: str, role: str) -> bool:
    """Whether a file of the run directory is stored for this job's role.

    >>> wanted("adapters/trial-3/adapter_model.safetensors", "join"), wanted("results.json", "join")
    (True, False)
    """
    parts = rel.split("/")
    if any(p.startswith(".") for p in parts) or rel.startswith(NOT_COPIED) or rel.endswith((".db", ".db-journal",
                                                                                                ".db-wal", ".db-shm")):
        return False
    if role == "join":
        return len(parts) > 2 and parts[0] == "adapters" and parts[1].startswith("trial-")
    return True


class FileSync:
    def __init__(self, store, limits, run_id: int, job_id: int, run_dir: Path, role: str):
        self.store, self.limits = store, limits
        self.run_id, self.job_id, self.run_dir, self.role = run_id, job_id, Path(run_dir), role
        self.seen: dict[str, tuple[int, int]] = {}

    def _scan(self) -> dict[str, tuple[int, int, Path]]:
        found = {}
        if not self.run_dir.is_dir():
            return found
        for path in self.run_dir.rglob("*"):
            try:
                if not path.is_file() or path.is_symlink():
                    continue
                rel = path.relative_to(self.run_dir).as_posix()
                if wanted(rel, self.role):
                    st = path.stat()
                    found[rel] = (st.st_size, st.st_mtime_ns, path)
            except OSError:  # removed while we looked (an adapter being replaced)
                continue
        return found

    def skip_unchanged(self) -> None:
        """Count the files there now as stored (they were copied in from the database)."""
        self.seen = {rel: (size, mtime) for rel, (size, mtime, _) in self._scan().items()}

    def sync(self) -> int:
        """Store the files that are new or changed since the last call; returns how many."""
        n = 0
        for rel, (size, mtime, path) in sorted(self._scan().items()):
            if self.seen.get(rel) == (size, mtime):
                continue
            try:
                if size > self.limits.artifact_mb * 2**20:
                    self.store.put_file(self.run_id, self.job_id, rel, None, size=size,
                                        note=f"{size / 2**20:.0f} MB, above the server's limit; kept at {path}")
                else:
                    content = path.read_bytes()
                    self.store.put_file(self.run_id, self.job_id, rel, content, size=len(content))
            except OSError:
                continue  # replaced while reading: the next pass stores it
            self.seen[rel] = (size, mtime)
            n += 1
        return n

    def put_log(self, log_path: Path) -> None:
        """The tail of the job's log (its stdout and stderr) as ``logs/job-<id>.log``."""
        try:
            data = Path(log_path).read_bytes()[-self.limits.log_kb * 1024:]
        except OSError:
            return
        data = redact(data.decode("utf-8", "replace")).encode("utf-8")  # a traceback may quote a secret
        self.store.put_file(self.run_id, self.job_id, f"logs/job-{self.job_id}.log", data, size=len(data))
