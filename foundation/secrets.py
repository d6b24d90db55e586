"""Secrets (API tokens, keys, passwords in URLs): read once, stripped, checked, and never shown.

Every place that reads a secret goes through ``clean_secret`` (or ``env_secret``): surrounding
whitespace (a token file saved with CRLF, a copied newline) is stripped, a value still unusable
in an HTTP header is refused with a message that does not quote it, and the value is remembered
so that ``redact`` takes it out of any text shown afterwards: the CLI's error lines, the
service's error answers and logs.
"""
from __future__ import annotations

import os
import re

from foundation.errors import AdviseError

SHOWN = "[redacted]"
MIN_LENGTH = 8  # shorter values are not redacted on their own (they would blank out ordinary words)
_known: set[str] = set()
# Environment variables whose values are secrets wherever they turn up.
_SECRET_ENV = re.compile(r"(TOKEN|API_KEY|APIKEY|SECRET|PASSWORD|PASSWD|ACCESS_KEY|PRIVATE_KEY)$", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<password>[^\s/@]+)(?=@)")
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<token>(?!<)[^\s'\"<>]+)", re.IGNORECASE)


def remember(secret: str | None) -> None:
    """``redact`` takes ``secret`` (and its stripped form) out of every text from now on."""
    if not secret:
        return
    for value in {secret, secret.strip()}:
        if len(value) >= MIN_LENGTH:
            _known.add(value)


def clean_secret(value: str, *, where: str, file: str | None = None) -> str:
    """``value`` without surrounding whitespace; an AdviseError that does not quote it when it is
    empty or holds a character an HTTP header cannot carry (a space, a control character, non-ASCII).

    >>> clean_secret("  abc-DEF_123\\r\\n", where="--token")
    'abc-DEF_123'
    """
    remember(value)
    secret = value.strip()
    if not secret:
        raise AdviseError("is empty", file=file, where=where)
    bad = next((c for c in secret if not 33 <= ord(c) <= 126), None)
    if bad is not None:
        kind = "a space" if bad.isspace() else "a control character" if ord(bad) < 32 or ord(bad) == 127 \
            else "a non-ASCII character"
        raise AdviseError(f"the token holds {kind} at position {secret.index(bad) + 1} of {len(secret)}; a token "
                          "or key is printable ASCII without spaces (it is not shown)", file=file, where=where)
    return secret


def env_secret(name: str) -> str | None:
    """A secret from the environment variable ``name`` (None when unset or blank), cleaned and remembered."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    return clean_secret(value, where=f"${name}")


def _environment_secrets() -> set[str]:
    return {v.strip() for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v.strip()) >= MIN_LENGTH}


def redact(text: str) -> str:
    """``text`` with every remembered secret, every secret-named environment variable's value,
    the password of any URL and the token after ``Bearer`` replaced by ``[redacted]``.

    >>> redact("cannot reach postgresql://me:hunter2@db/x; Bearer abc")
    'cannot reach postgresql://me:[redacted]@db/x; Bearer [redacted]'
    """
    if not text:
        return text
    for secret in sorted(_known | _environment_secrets(), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, SHOWN)
        escaped = secret.encode("unicode_escape").decode("ascii")  # as a one-line error shows it
        if escaped != secret and escaped in text:
            text = text.replace(escaped, SHOWN)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + SHOWN, text)
    return _BEARER.sub(lambda m: m["head"] + (m["token"] if m["token"] == SHOWN else SHOWN), text)


def redact_values(value):
    """``value`` (a JSON-like structure) with ``redact`` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(v) for v in value]
    return value
