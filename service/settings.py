"""What a server or a worker is started with, and the checks made before anything starts.

Embedded default: everything under one data directory (``advise.db`` for the state and the
studies, ``queue.db`` for the queue). A team gives ``--db postgresql://…`` (state and Optuna
studies) and ``--queue redis://…``; servers and workers must then be given the same two URLs.
"""
from __future__ import annotations

import hmac
import ipaddress
import math
import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from foundation.errors import AdviseError
from foundation.secrets import clean_secret, redact, remember

ROLES = ("read", "submit")


@dataclass(frozen=True)
class Token:
    name: str  # who: shown as the submitter of runs started with this token
    role: str  # read (pages and API, read-only) or submit (also submit, cancel, re-run)
    secret: str


@dataclass
class Limits:
    upload_mb: float = 100.0  # request body of one submission
    files: int = 2000  # files in one submission (form files, or zip entries)
    unpacked_mb: float = 500.0  # a zip's contents once unpacked
    artifact_mb: float = 512.0  # larger files of a run stay on the worker (their path is listed)
    log_kb: int = 512  # the tail of a job's log kept in the database


@dataclass
class Settings:
    data_dir: Path
    db: str | None = None  # None: sqlite:///<data_dir>/advise.db
    queue: str | None = None  # None: SQLite queue in <data_dir>/queue.db; or redis://host:port/db
    host: str = "127.0.0.1"
    port: int = 8000
    tokens: list[Token] = field(default_factory=list)
    allow_remote_code: bool = False
    workers: int | None = None  # local worker pool of `advise serve`; None: 1 embedded, 0 with --queue
    heartbeat_s: float = 10.0  # a running job writes a heartbeat this often; 3 missed and it is failed
    limits: Limits = field(default_factory=Limits)
    dashboard_url: str | None = None  # an optuna-dashboard on study_storage, linked from the sweep page
    dashboard_port: int | None = None  # `advise serve` starts optuna-dashboard on loopback at this port

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{(self.data_dir / 'advise.db').resolve()}"

    @property
    def study_storage(self) -> str:
        """Where the Optuna studies of all runs live (one study per run, named ``run-<id>-<task>``)."""
        return self.db_url

    @property
    def local_workers(self) -> int:
        return self.workers if self.workers is not None else (1 if self.queue is None else 0)


def default_data_dir() -> Path:
    root = os.environ.get("ADVISE_DATA") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "advise")
    return Path(root)


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1`` and ``localhost`` (whatever it resolves to must be loopback too).

    >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("::1")
    (True, False, True)
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host != "localhost":
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def _read_regular(path: Path, shown: str, limit: int = 1 << 20) -> str:
    """A small regular file's text: a named pipe or a device would block the read (or never end)."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise AdviseError("is a folder, not a tokens file", file=shown)
        if not stat.S_ISREG(info.st_mode):
            raise AdviseError("is not a regular file (a named pipe or a device); give a file", file=shown)
        if info.st_size > limit:
            raise AdviseError(f"is {info.st_size} bytes; a tokens file is at most {limit} bytes", file=shown)
        with open(path, "rb") as f:
            return f.read(limit + 1).decode("utf-8-sig")  # a BOM (Windows editors) is not part of the first role
    except OSError as e:
        raise AdviseError(f"cannot read the tokens file: {(e.strerror or str(e)).lower()}", file=shown) from None
    except UnicodeDecodeError:
        raise AdviseError("is not UTF-8 text", file=shown) from None


def read_tokens(path: Path) -> list[Token]:
    """A tokens file: one ``<role> <name> <token>`` per line (role ``read`` or ``submit``), ``#`` comments.
    Errors name the line, never the token (nor a field that may be one, in the wrong place)."""
    shown = str(path)
    lines = _read_regular(path, shown).splitlines()
    tokens, seen = [], {}
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ROLES:
            for part in parts:  # a token in the wrong field is still a token
                remember(part if len(part) >= 16 else None)
            if len(parts) != 3:
                raise AdviseError(f"expected `<role> <name> <token>`, found {len(parts)} fields", file=shown, where=n)
            raise AdviseError("the first field is not a role; use read or submit", file=shown, where=n)
        role, name, secret = parts[0], parts[1], clean_secret(parts[2], where=n, file=shown)
        if len(secret) < 16:
            raise AdviseError("the token is shorter than 16 characters", file=shown, where=n)
        if secret in seen:  # which role would it have? give each person a token of their own
            raise AdviseError(f"the same token as on line {seen[secret]}", file=shown, where=n)
        seen[secret] = n
        tokens.append(Token(name=name, role=role, secret=secret))
    if not tokens:
        raise AdviseError("no tokens in the file", file=shown)
    return tokens


def find_token(tokens: list[Token], presented: str | None) -> Token | None:
    """The token matching ``presented`` (compared in constant time), or None."""
    presented = (presented or "").strip()
    if not presented:
        return None
    found = None
    for t in tokens:
        if hmac.compare_digest(t.secret.encode(), presented.encode()):
            found = t
    return found


def check_bind(settings: Settings) -> None:
    """A server on any address but loopback must have tokens: refuse to start without them."""
    if not is_loopback(settings.host) and not settings.tokens:
        raise AdviseError(f"refusing to listen on {settings.host}, which is not a loopback address, without API "
                          "tokens: give --tokens FILE (lines `<role> <name> <token>`, role read or submit)",
                          where="--host")


def check_urls(settings: Settings) -> None:
    """One-line errors for a --db or --queue this service cannot use, before anything starts."""
    if settings.db is not None and not settings.db.startswith(("postgresql://", "postgresql+", "sqlite:///")):
        raise AdviseError(f"expected postgresql://user@host/db or sqlite:///path, got {redact(repr(settings.db))}",
                          where="--db")
    if settings.queue is not None and not settings.queue.startswith(("redis://", "rediss://", "sqlite:///")):
        raise AdviseError(f"expected redis://host:port/db or sqlite:///path, got {redact(repr(settings.queue))}",
                          where="--queue")
    if settings.dashboard_url is not None and not settings.dashboard_url.startswith(("http://", "https://")):
        raise AdviseError(f"expected an http:// or https:// URL, got {redact(repr(settings.dashboard_url))}",
                          where="--dashboard-url")  # it becomes a link on the sweep page
    _check_number(settings.heartbeat_s, "--heartbeat", 0.1, 3600)
    _check_number(settings.port, "--port", 1, 65535)
    if settings.dashboard_port is not None:
        _check_number(settings.dashboard_port, "--dashboard-port", 1, 65535)
        if settings.dashboard_port == settings.port:
            raise AdviseError(f"is also --port {settings.port}; give another port", where="--dashboard-port")


def _check_number(value: float, flag: str, lo: float, hi: float) -> None:
    """The CLI checks its options first; this keeps Settings made in code (tests, scripts) to the same ranges."""
    if not (math.isfinite(value) and lo <= value <= hi):
        raise AdviseError(f"must be a number from {lo:g} to {hi:g}, got {value}", where=flag)


def make_settings(*, data_dir: Path | None = None, db: str | None = None, queue: str | None = None,
                  tokens: Path | None = None, upload_mb: float | None = None, **kw) -> Settings:
    """Settings from the command line's options (None: the default)."""
    limits = Limits()
    if upload_mb is not None:
        _check_number(upload_mb, "--max-upload-mb", 0.01, 100_000)
        limits.upload_mb = upload_mb
    settings = Settings(data_dir=Path(data_dir) if data_dir else default_data_dir(), db=db, queue=queue,
                        tokens=read_tokens(tokens) if tokens else [], limits=limits,
                        **{k: v for k, v in kw.items() if v is not None})
    check_urls(settings)
    return settings
