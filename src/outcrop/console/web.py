"""The console's plumbing: its dependencies, Jinja rendering, form parsing, the sign-in guard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from outcrop.api.auth import Caller
from outcrop.api.bedrock import BedrockApi
from outcrop.console import present
from outcrop.console.queries import account_fingerprint, encode_fingerprint
from outcrop.console.session import CSRF_FIELD, Session, Sessions, csrf_ok
from outcrop.domain.catalog import CatalogEntry
from outcrop.storage.base import ObjectStore
from outcrop.store.outbox import OutboxStore
from outcrop.store.sql import SqlJobStore

PREFIX = "/console"
TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 64 * 1024

StorageGetter = Callable[[], ObjectStore | None]
CatalogGetter = Callable[[], list[CatalogEntry]]


def _number(value: int | float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def _pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def template_env() -> Environment:
    """Autoescape on for every template: user values are only ever rendered as text."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters |= {
        "when": present.when,
        "iso_attr": present.iso_attr,
        "span": present.span,
        "number": _number,
        "pretty_json": _pretty_json,
    }
    env.globals |= {"prefix": PREFIX, "badge_tones": present.BADGE_TONES}
    return env


@dataclass
class Deps:
    store: SqlJobStore
    api: BedrockApi
    storage: StorageGetter
    catalog: CatalogGetter
    sessions: Sessions
    outbox: OutboxStore
    env: Environment = field(default_factory=template_env)

    def render(
        self,
        name: str,
        context: dict[str, Any],
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=headers)


@dataclass
class Ctx:
    """One signed-in request, as a view sees it."""

    request: Request
    session: Session
    form: dict[str, str]

    @property
    def account_id(self) -> str:
        assert self.session.account_id is not None
        return self.session.account_id

    @property
    def caller(self) -> Caller:
        return Caller(self.account_id, self.session.access_key_id or "")

    def base(self, nav: str, **extra: Any) -> dict[str, Any]:
        """The context every full page needs (layout, navigation, the CSRF token)."""
        return {
            "nav": nav,
            "account_id": self.account_id,
            "access_key_id": self.session.access_key_id,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.session.csrf_token,
            **extra,
        }

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"


async def read_form(request: Request) -> dict[str, str] | None:
    """A urlencoded form body (last value wins), or None when it is not one or too large."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return dict(parse_qsl(text, keep_blank_values=True))


View = Callable[[Deps, Ctx], Response]


def guarded(deps: Deps, view: View) -> Callable[[Request], Awaitable[Response]]:
    """Only for signed-in users; every POST must carry the session's CSRF token."""

    async def endpoint(request: Request) -> Response:
        session = await run_in_threadpool(deps.sessions.signed_in, request)
        if session is None:
            if request.headers.get("hx-request") == "true":
                return Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/signin"})
            if request.method != "GET":
                return Response("Sign in first.", status_code=401, media_type="text/plain")
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{PREFIX}/signin?next={quote(target)}", status_code=303)
        form: dict[str, str] = {}
        if request.method == "POST":
            parsed = await read_form(request)
            if parsed is None or not csrf_ok(session, parsed.get(CSRF_FIELD)):
                return forbidden(deps)
            form = parsed
        return await run_in_threadpool(view, deps, Ctx(request, session, form))

    return endpoint


def forbidden(deps: Deps) -> Response:
    return deps.render(
        "message.html",
        {
            "title": "Request refused",
            "text": "The form was missing its security token or it has expired. "
            "Go back, reload the page and try again.",
        },
        status=403,
    )


def not_found(deps: Deps, ctx: Ctx, what: str) -> Response:
    return deps.render("not_found.html", ctx.base("jobs", title="Not found", what=what), status=404)


def stream_url(deps: Deps, ctx: Ctx) -> str:
    """The live stream's URL, stamped with the account's state now: read it before the data a
    page shows, so any change after that reaches the page even before its stream connects."""
    since = encode_fingerprint(account_fingerprint(deps.store, ctx.account_id))
    return f"{PREFIX}/stream?since={since}"


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)
