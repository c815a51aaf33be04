"""The web console under /console: routes, sign-in and sign-out, the live stream, simple pages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outcrop.api.bedrock import BedrockApi
from outcrop.console import job_details, jobs
from outcrop.console.queries import account_fingerprint, decode_fingerprint
from outcrop.console.session import CSRF_FIELD, Session, Sessions, csrf_ok
from outcrop.console.web import (
    PREFIX,
    CatalogGetter,
    Ctx,
    Deps,
    StorageGetter,
    forbidden,
    guarded,
    read_form,
    see_other,
)
from outcrop.store.outbox import OutboxStore
from outcrop.store.sql import SqlJobStore

STATIC = Path(__file__).parent / "static"
STREAM_POLL_S = 0.5
EVENTS_PAGE = 50
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
    "data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SecurityHeaders:
    """Every console response: no framing, no sniffing, scripts only from /console/static."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                if not any(k == b"cache-control" for k, _ in headers):
                    static = scope.get("path", "").startswith(f"{PREFIX}/static/")
                    headers.append(
                        (b"cache-control", b"public, max-age=3600" if static else b"no-store")
                    )
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _safe_next(target: str | None) -> str:
    """Only a console path, never another site (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        if "\\" not in target and "://" not in target:
            return target
    return f"{PREFIX}/jobs"


class SignIn:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def _form(
        self, request: Request, session: Session, error: str | None = None, status: int = 200
    ) -> Response:
        response = self.deps.render(
            "signin.html",
            {
                "title": "Sign in",
                "csrf_field": CSRF_FIELD,
                "csrf_token": session.csrf_token,
                "error": error,
                "next": _safe_next(request.query_params.get("next")),
                "access_key_id": "",
            },
            status=status,
        )
        self.deps.sessions.write(response, session, request)
        return response

    async def page(self, request: Request) -> Response:
        signed_in = await run_in_threadpool(self.deps.sessions.signed_in, request)
        if signed_in is not None:
            return see_other(f"{PREFIX}/jobs")
        # An anonymous session only to carry the sign-in form's CSRF token.
        return self._form(request, self.deps.sessions.load(request) or Session.fresh())

    async def submit(self, request: Request) -> Response:
        session = self.deps.sessions.load(request)
        form = await read_form(request)
        if form is None or not csrf_ok(session, form.get(CSRF_FIELD)):
            return forbidden(self.deps)
        key_id = form.get("access_key_id", "").strip()
        secret = form.get("secret_access_key", "")
        opened = await run_in_threadpool(self.deps.sessions.sign_in, key_id, secret)
        if opened is None:
            response = self._form(
                request,
                Session.fresh(),
                "The access key id or secret access key is not correct.",
                status=401,
            )
            return response
        response = see_other(_safe_next(form.get("next")))
        self.deps.sessions.write(response, opened, request)
        return response


def sign_out(deps: Deps, ctx: Ctx) -> Response:
    response = see_other(f"{PREFIX}/signin")
    deps.sessions.clear(response)
    return response


def events_page(deps: Deps, ctx: Ctx) -> Response:
    try:
        after = max(0, int(ctx.request.query_params.get("after", "0")))
    except ValueError:
        after = 0
    found = deps.outbox.list_events(ctx.account_id, None, after, EVENTS_PAGE + 1)
    page = found[:EVENTS_PAGE]
    deliveries = deps.outbox.deliveries_of([e.seq for e in page])
    rows = [
        {
            "seq": e.seq,
            "job_id": e.job_id,
            "name": e.payload.get("detail", {}).get("batchJobName", ""),
            "status": e.payload.get("detail", {}).get("status", ""),
            "time": e.payload.get("time", ""),
            "deliveries": deliveries.get(e.seq, []),
        }
        for e in page
    ]
    next_url = f"{PREFIX}/events?after={page[-1].seq}" if len(found) > EVENTS_PAGE else None
    return deps.render(
        "events.html",
        ctx.base("events", title="Events", rows=rows, next_url=next_url, paged=after > 0),
    )


def models_page(deps: Deps, ctx: Ctx) -> Response:
    return deps.render("models.html", ctx.base("models", title="Models", models=deps.catalog()))


def account_page(deps: Deps, ctx: Ctx) -> Response:
    endpoint = f"{ctx.request.url.scheme}://{ctx.request.url.netloc}"
    return deps.render("account.html", ctx.base("account", title="Account", endpoint=endpoint))


class LiveStream:
    """Server-sent events for the signed-in account: `change` whenever its jobs or events move.

    Pages re-fetch their fragments on `change`; the frames carry no job data themselves.
    """

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def stream(self, request: Request) -> Response:
        session = await run_in_threadpool(self.deps.sessions.signed_in, request)
        if session is None or session.account_id is None:
            return Response("Sign in first.", status_code=401, media_type="text/plain")
        account_id = session.account_id
        store = self.deps.store
        since = decode_fingerprint(request.query_params.get("since"))

        async def frames() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n: outcrop console stream\n\n"
            # The page says what state it showed; without that, the state at connection.
            last = since
            while not await request.is_disconnected():
                current = await run_in_threadpool(account_fingerprint, store, account_id)
                if last is not None and current != last:
                    yield b"event: change\ndata: changed\n\n"
                else:
                    yield b": keep-alive\n\n"
                last = current
                await asyncio.sleep(STREAM_POLL_S)

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )


def console_routes(
    store: SqlJobStore,
    api: BedrockApi,
    storage: StorageGetter,
    catalog: CatalogGetter,
    secret: str,
) -> list[Route | Mount]:
    """The console's routes, for the API app's `extra_routes`."""
    deps = Deps(
        store=store,
        api=api,
        storage=storage,
        catalog=catalog,
        sessions=Sessions(store, secret),
        outbox=OutboxStore(store),
    )
    signin = SignIn(deps)

    def page(view: Any) -> Any:
        return guarded(deps, view)

    routes: list[Any] = [
        Route("/", lambda _request: see_other(f"{PREFIX}/jobs"), methods=["GET"]),
        Route("/signin", signin.page, methods=["GET"]),
        Route("/signin", signin.submit, methods=["POST"]),
        Route("/signout", page(sign_out), methods=["POST"]),
        Route("/jobs", page(jobs.list_jobs), methods=["GET"]),
        Route("/jobs/rows", page(jobs.job_rows), methods=["GET"]),
        Route("/jobs/new", page(jobs.new_job_form), methods=["GET"]),
        Route("/jobs/new", page(jobs.create_job), methods=["POST"]),
        Route("/jobs/{job_id}", page(job_details.job_details), methods=["GET"]),
        Route("/jobs/{job_id}/live", page(job_details.job_live), methods=["GET"]),
        Route("/jobs/{job_id}/stop", page(job_details.confirm_stop), methods=["GET"]),
        Route("/jobs/{job_id}/stop", page(job_details.stop_job), methods=["POST"]),
        Route("/jobs/{job_id}/tags", page(job_details.add_tag), methods=["POST"]),
        Route("/jobs/{job_id}/tags/remove", page(job_details.remove_tag), methods=["POST"]),
        Route("/jobs/{job_id}/download", page(job_details.download), methods=["GET"]),
        Route("/events", page(events_page), methods=["GET"]),
        Route("/models", page(models_page), methods=["GET"]),
        Route("/account", page(account_page), methods=["GET"]),
        Route("/stream", LiveStream(deps).stream, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="console-static"),
    ]
    return [
        Route(PREFIX, lambda _request: RedirectResponse(f"{PREFIX}/jobs", 303), methods=["GET"]),
        Mount(PREFIX, app=SecurityHeaders(Router(routes=routes))),
    ]
