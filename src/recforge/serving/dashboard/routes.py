"""The dashboard's routes under ``/ui``: six server-rendered pages and two admin actions.

Pages are plain ``def`` handlers (FastAPI runs them in the thread pool, off the event loop
that answers the API) and carry their server time in a ``Server-Timing`` header. Reading needs
no key, unless ``serving.auth_reads`` asks for one for the API's reads too (then an API or
admin key, as HTTP Basic's password or a bearer token). ``POST /ui/models/publish`` (form
fields ``version`` and ``key``) and ``POST /ui/models/rollback`` (``key``) need an admin key
(``serving.admin_keys``), in the form or as ``Authorization: Bearer <key>``: 403 when none is
configured, 401 when the key is wrong, else the registry publishes
(:meth:`~recforge.artifacts.ModelRegistry.publish`) or rolls back and the browser is sent back
to the Models page.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from recforge._version import __version__
from recforge.errors import RecforgeError
from recforge.serving.dashboard.pages import (
    item_page,
    models_page,
    overview_page,
    pipeline_page,
    tuning_page,
    user_page,
)
from recforge.serving.dashboard.state import Dashboard

__all__ = ["PREFIX", "STATIC", "router"]

PREFIX = "/ui"
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
NAV = (("/", "Overview"), ("/pipeline", "Pipeline"), ("/models", "Models"), ("/users", "Users"),
       ("/items", "Items"), ("/tuning", "Tuning"))  # fmt: skip
#: Largest form body accepted by the actions, in bytes.
MAX_FORM_BYTES = 4096

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard | None = getattr(request.app.state, "dashboard", None)
    if dashboard is None:
        raise HTTPException(503, "the dashboard is starting")
    return dashboard


def _check_read(request: Request, dashboard: Dashboard) -> None:
    """With ``serving.auth_reads``, pages show users' histories only to a holder of an API or
    admin key: as the password of HTTP Basic authentication (the browser asks for it) or as a
    bearer token; else 401."""
    if not dashboard.config.serving.auth_reads:
        return
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    key = credentials.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key, validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    if not key or not (dashboard.read_keys.check(key) or dashboard.admin_keys.check(key)):
        raise HTTPException(
            401,
            "serving.auth_reads is on: the dashboard needs an API key",
            {"WWW-Authenticate": 'Basic realm="recforge"'},
        )


def _page(
    request: Request,
    template: str,
    title: str,
    build: Callable[..., dict[str, Any]],
    *args: Any,
    status: int = 200,
    message: str | None = None,
    message_kind: str = "",
) -> HTMLResponse:
    started = time.perf_counter()
    dashboard = _dashboard(request)
    _check_read(request, dashboard)
    data = build(dashboard, *args)
    seconds = time.perf_counter() - started
    html = _templates.get_template(template).render(
        **data,
        title=title,
        nav=NAV,
        root=PREFIX,
        home=str(dashboard.home),
        version=__version__,
        seconds=seconds,
        message=message or request.query_params.get("message"),
        message_kind=message_kind or request.query_params.get("kind", ""),
    )
    total = time.perf_counter() - started
    headers = {"Server-Timing": f"data;dur={seconds * 1e3:.2f}, total;dur={total * 1e3:.2f}"}
    return HTMLResponse(html, status_code=status, headers=headers)


@router.get("", response_class=RedirectResponse)
def root() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    return _page(request, "overview.html", "Overview", overview_page)


@router.get("/pipeline", response_class=HTMLResponse)
def pipeline(request: Request) -> HTMLResponse:
    return _page(request, "pipeline.html", "Pipeline", pipeline_page)


@router.get("/models", response_class=HTMLResponse)
def models(request: Request) -> HTMLResponse:
    return _page(request, "models.html", "Models", models_page)


@router.get("/users", response_class=HTMLResponse)
def users(request: Request, user_id: str | None = None) -> HTMLResponse:
    return _page(request, "users.html", "Users", user_page, _bounded(user_id, request, "user_id"))


@router.get("/items", response_class=HTMLResponse)
def items(request: Request, item_id: str | None = None) -> HTMLResponse:
    return _page(request, "items.html", "Items", item_page, _bounded(item_id, request, "item_id"))


@router.get("/tuning", response_class=HTMLResponse)
def tuning(request: Request) -> HTMLResponse:
    return _page(request, "tuning.html", "Tuning", tuning_page)


def _bounded(value: str | None, request: Request, what: str) -> str | None:
    limit = _dashboard(request).config.data.max_id_length
    if value is not None and len(value) > limit:
        raise HTTPException(422, f"{what} is longer than {limit} characters")
    return value.strip() if value else None


# actions -------------------------------------------------------------------------------------
@router.post("/models/publish")
async def publish(request: Request) -> Response:
    form = await _form(request)
    dashboard = _dashboard(request)
    refused = _refused(request, dashboard, form)
    if refused is not None:
        return refused
    version = form.get("version", "")
    try:
        info = dashboard.registry.publish(version)
    except RecforgeError as error:
        return _done(request, str(error), "error", 404)
    dashboard.refresh_now()
    return _done(request, f"published {info.version}")


@router.post("/models/rollback")
async def rollback(request: Request) -> Response:
    form = await _form(request)
    dashboard = _dashboard(request)
    refused = _refused(request, dashboard, form)
    if refused is not None:
        return refused
    try:
        info = dashboard.registry.rollback()
    except RecforgeError as error:
        return _done(request, str(error), "error", 409)
    dashboard.refresh_now()
    return _done(request, f"rolled back to {info.version}")


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise HTTPException(400, "the form is not UTF-8") from None
    return {key: values[-1] for key, values in fields.items()}


def _refused(request: Request, dashboard: Dashboard, form: dict[str, str]) -> Response | None:
    """The Models page with the reason, 403 without admin keys configured, 401 without a
    valid one (form ``key`` or bearer); ``None`` when the key is good."""
    if not dashboard.admin_keys:
        message = (
            "refused: publishing and rolling back are disabled, no admin keys are configured "
            "(serving.admin_keys, RECFORGE_ADMIN_KEYS)"
        )
        return _done(request, message, "error", 403)
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    key = form.get("key") or (bearer.strip() if scheme.lower() == "bearer" else "")
    if not key or not dashboard.admin_keys.check(key):
        response = _done(request, "refused: a valid admin key is required", "error", 401)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return None


def _done(request: Request, message: str, kind: str = "ok", status: int = 303) -> Response:
    """Back to the Models page with ``message`` (a redirect after success: no re-post on reload)."""
    if status == 303:
        return RedirectResponse(f"{PREFIX}/models?message={quote(message)}&kind={kind}", status_code=303)
    return _page(
        request, "models.html", "Models", models_page, status=status, message=message, message_kind=kind
    )
