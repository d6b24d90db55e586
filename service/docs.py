"""The API's description: ``/api/openapi.json`` and a page that lists it, ``/api/docs``.

Both need a read token when the server has tokens (the API's shape is not for whoever reaches the
port). The page is rendered here from the OpenAPI document, with no script: FastAPI's Swagger UI
loads its scripts from a CDN, outside the pages' Content-Security-Policy.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from service.auth import require_read, who
from service.pages import _page

router = APIRouter(include_in_schema=False)
METHODS = ("get", "post", "put", "patch", "delete")


def _schema_name(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_schema_name(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list[{_schema_name(schema.get('items', {}))}]"
    return str(schema.get("type", "object"))


def operations(doc: dict) -> list[dict]:
    """Each path and method of the OpenAPI document: what the page shows."""
    out = []
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = [{"name": p["name"], "where": p["in"], "required": p.get("required", False),
                       "type": _schema_name(p.get("schema", {})), "about": p.get("description", "")}
                      for p in op.get("parameters", [])]
            out.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                        "about": op.get("description", ""), "params": params,
                        "answers": sorted(op.get("responses", {}).items())})
    return out


@router.get("/api/openapi.json")
def openapi(request: Request, _=Depends(require_read)) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/api/docs", response_class=HTMLResponse)
def docs(request: Request):
    if who(request) is None:
        return RedirectResponse("/login?next=/api/docs", status_code=303)
    doc = request.app.openapi()
    return _page(request, "api_docs.html", info=doc.get("info", {}), operations=operations(doc))
