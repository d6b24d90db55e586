"""Who may do what, and the request checks every response goes through.

- No tokens (only allowed on loopback): everyone who can reach the port may read and submit.
  The Host header must then name a loopback host, so a web page cannot reach the server through
  DNS rebinding.
- Tokens: ``Authorization: Bearer <token>`` for the API, or the same token once typed into the
  login page (kept in an HttpOnly, SameSite=Strict cookie). ``read`` tokens see everything;
  ``submit`` tokens may also submit, cancel and re-run.
- A request that changes something and comes from another site's page (``Origin`` or
  ``Sec-Fetch-Site`` say so) is refused.
- Pages get a Content-Security-Policy that allows only the service's own scripts and styles.
"""
from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse

from service.settings import Token, find_token, is_loopback

COOKIE = "advise_token"
LOCAL = Token(name="local", role="submit", secret="")
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# report.html and every downloaded file: no scripts, no same-origin access, even when opened directly.
FILE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
PUBLIC = ("/login", "/static/", "/api/health")


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def who(request: Request) -> Token | None:
    """The caller's token, LOCAL when the server has none, None when a token is needed and missing."""
    tokens = request.app.state.settings.tokens
    if not tokens:
        return LOCAL
    return find_token(tokens, presented_token(request))


def require_read(request: Request) -> Token:
    user = who(request)
    if user is None:
        raise HTTPException(401, "an API token is needed: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


def require_submit(request: Request) -> Token:
    user = require_read(request)
    if user.role != "submit":
        raise HTTPException(403, f"the token of {user.name} is read-only; submitting, cancelling and re-running "
                                 "need a submit token")
    return user


def _host_ok(request: Request) -> bool:
    """Without tokens, only loopback names: a page on another site cannot reach us by DNS rebinding."""
    settings = request.app.state.settings
    if settings.tokens:
        return True
    host = request.headers.get("host", "")
    name = host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
    return name == "localhost" or name == settings.host or (bool(name) and is_loopback(name))


def _same_site(request: Request) -> bool:
    """A change (POST) from a page of another origin is refused; scripts and curl send no Origin."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return True
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


async def guard(request: Request, call_next):
    """Host and cross-site checks, the login redirect for pages, and security headers."""
    if not _host_ok(request):
        return JSONResponse({"detail": "unexpected Host header (this server answers on loopback names only)"},
                            status_code=421)
    if not _same_site(request):
        return JSONResponse({"detail": "cross-site request refused"}, status_code=403)
    path = request.url.path
    is_page = not path.startswith(("/api/", "/static/"))
    if is_page and not path.startswith(PUBLIC) and who(request) is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    response = await call_next(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if is_page or path == "/api/docs":  # the API's page (service.docs) is a page like the others
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    return response
