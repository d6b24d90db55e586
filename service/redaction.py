"""No secret in what the service answers or logs: error answers and log lines pass through
``foundation.secrets.redact`` (the server's tokens, secret-named environment variables, URL
passwords, anything after ``Bearer``), and a request that fails validation is answered without
the value it sent (FastAPI's default echoes it: a token typed into the wrong field, say)."""
from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from foundation.secrets import redact


def _clean(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k != "input"}
    return value


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"detail": _clean(jsonable_encoder(exc.detail))}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _clean(jsonable_encoder(exc.errors()))}, status_code=422)


def install(app: FastAPI) -> None:
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)


class RedactingFilter(logging.Filter):
    """Formats a record's message and traceback once, redacted, so no handler prints the raw ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call: leave it to logging's own error report
            return True
        record.msg, record.args = redact(message), ()
        record.__dict__.pop("color_message", None)  # uvicorn's coloured copy would be formatted with the args
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def redact_logs(*names: str) -> None:
    """Put the filter on every handler of the root logger and of ``names`` (uvicorn's, once it set them up)."""
    if not logging.getLogger().handlers:  # what logging's last resort would print, now through the filter
        logging.basicConfig(format="%(message)s")
    for name in ("", *names):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
