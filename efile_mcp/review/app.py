"""The review page's HTTP side: routes under /review/, each behind the page secret, with the checks a
page that can approve a deletion needs.

    GET  /review/<secret>/                 the page (sets the SameSite=Strict cookie of this page)
    GET  /review/<secret>/api/children     one page of a folder's children (JSON; ?folder=&offset=&limit=&sort=)
    GET  /review/<secret>/api/paths        one page of every path, or of those matching ?q= (JSON)
    GET  /review/<secret>/api/exceptions   one page of what is refused or missing, and why (JSON)
    GET  /review/<secret>/api/status       where the plan stands (the open page reloads when it changes)
    GET  /review/<secret>/plan.csv         the whole plan, streamed
    POST /review/<secret>/decide           Approve or Decline (form: csrf, decision, mode)
    GET  /review/assets/<name>             the page's CSS and JavaScript (shipped in the package)

Every request: the Host must be one the site serves (loopback with its port; DNS rebinding otherwise).
An unknown, altered or long-expired secret is 404 with the same body as any other miss. A POST must
come from the page itself: its Origin is this site (or `null` with `Sec-Fetch-Site: same-origin`, what
a browser sends for a form under `Referrer-Policy: no-referrer`), it carries the page's cookie and the
form's CSRF value derived from that cookie and the page secret. The confirmation token is never on
the page, and a token in place of the secret finds nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from hashlib import sha256
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse

from .render import render_page
from .site import AFTERLIFE, SECRET_PATTERN, Page, approvable_modes
from .view import page_bounds

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from .site import ReviewSite

PREFIX = "/review/"
COOKIE = "efile_review"
#: The most bytes a decision's form may have.
FORM_MAX = 4096

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}

ASSETS = {"page.css": "text/css; charset=utf-8", "page.js": "text/javascript; charset=utf-8"}


def csrf_value(secret: str, cookie: str) -> str:
    """The form's CSRF value: bound to this page (its secret) and to this browser (its cookie)."""
    return hmac.new(secret.encode(), b"csrf\0" + cookie.encode(), sha256).hexdigest()


def _asset(name: str) -> bytes:
    return resources.files("efile_mcp.review").joinpath("assets", name).read_bytes()


def _not_found() -> Response:
    return PlainTextResponse("Not found.", status_code=404)


def _refused(why: str, status: int = 403) -> Response:
    return PlainTextResponse(f"Refused: {why}", status_code=status)


def review_app(site: ReviewSite) -> ASGIApp:
    """The pages of `site` as an ASGI app (HTTP only)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await _route(site, request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        await response(scope, receive, send)

    return app


async def _route(site: ReviewSite, request: Request) -> Response:
    host = request.headers.get("host", "").lower()
    if host not in site.allowed_hosts():
        return _refused("this page is served to its own address only", status=421)
    path = request.url.path
    if not path.startswith(PREFIX):
        return _not_found()
    secret, slash, rest = path[len(PREFIX) :].partition("/")
    if secret == "assets" and request.method in ("GET", "HEAD") and rest in ASSETS:
        response = Response(_asset(rest), media_type=ASSETS[rest])
        response.headers["cache-control"] = "no-cache"
        return response
    if not slash or not SECRET_PATTERN.fullmatch(secret):
        return _not_found()
    page = await site.page(secret)
    if page is None:
        return _not_found()
    if rest == "decide":
        if request.method != "POST":
            return PlainTextResponse("Use the page's buttons.", status_code=405, headers={"allow": "POST"})
        return await _decide(site, page, request, host)
    if request.method not in ("GET", "HEAD"):
        return PlainTextResponse("Method not allowed.", status_code=405, headers={"allow": "GET"})
    if rest == "":
        return _page(site, page, request)
    if rest == "plan.csv":
        return _csv(site, page)
    if rest.startswith("api/"):
        try:
            return await _api(site, page, rest[4:], request)
        except LookupError:  # the plan's rows expired or were lost since the page was opened
            return JSONResponse({"error": _EXPIRED}, 410)
    return _not_found()


def _page(site: ReviewSite, page: Page, request: Request) -> Response:
    cookie = request.cookies.get(COOKIE, "")
    fresh = not SECRET_PATTERN.fullmatch(cookie)
    if fresh:
        import secrets

        cookie = secrets.token_urlsafe(32)
    already = request.query_params.get("already") == "1"
    html = render_page(page, csrf=csrf_value(page.secret, cookie), now=site.clock(), already=already)
    response = Response(html, media_type="text/html; charset=utf-8")
    if fresh:
        remaining = int(max(60.0, page.record.expires_at + AFTERLIFE - site.clock()))
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=remaining,
            path=f"{PREFIX}{page.secret}/",
            httponly=True,
            samesite="strict",
        )
    return response


_EXPIRED = "This plan has expired: nothing can be read or decided here."


async def _api(site: ReviewSite, page: Page, what: str, request: Request) -> Response:
    if what == "status":  # the open page follows a decision made elsewhere (a terminal, another tab)
        return JSONResponse({"status": page.status})
    view = page.view
    if view is None:
        return JSONResponse({"error": _EXPIRED}, 410)
    query = request.query_params
    offset, limit = page_bounds(query.get("offset", 0), query.get("limit", 100))
    body: dict[str, Any] | None
    if what == "children":
        sort = "name" if query.get("sort") == "name" else "size"
        body = await view.children(site.store, query.get("folder") or None, offset, limit, sort)
    elif what == "paths":
        body = await view.paths(site.store, query.get("q", "")[:400], offset, limit)
    elif what == "exceptions":
        body = view.exceptions(offset, limit)
    else:
        return _not_found()
    if body is None:
        return JSONResponse({"error": "No such folder in this plan."}, 404)
    return JSONResponse(body)


def _csv(site: ReviewSite, page: Page) -> Response:
    view = page.view
    if view is None:
        return PlainTextResponse("This plan has expired.", status_code=410)

    async def chunks() -> AsyncIterator[bytes]:
        yield "\ufeff".encode()  # so that a spreadsheet reads the names as UTF-8
        try:
            async for chunk in view.csv_chunks(site.store):
                yield chunk.encode("utf-8", "surrogateescape")
        except LookupError:  # rows lost mid-download: the file ends short, and says so
            yield b"\r\nincomplete: the plan expired while this file was written\r\n"

    name = f"efile-plan-{page.record.plan_id}.csv"
    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


def _same_origin(request: Request, host: str) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return False
    if origin == "null":
        # Under Referrer-Policy: no-referrer a browser sends Origin: null with a form's POST; Sec-Fetch-Site
        # is set by the browser alone (a page cannot forge it) and says whether the form was this site's.
        return request.headers.get("sec-fetch-site") == "same-origin"
    return origin.lower() in (f"http://{host}", f"https://{host}")


async def _decide(site: ReviewSite, page: Page, request: Request, host: str) -> Response:
    if not _same_origin(request, host):
        return _refused("the decision did not come from this page (cross-site request)")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _refused("not a form of this page", status=415)
    body = b""
    async for part in request.stream():
        body += part
        if len(body) > FORM_MAX:
            return _refused("form too large", status=413)
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    cookie = request.cookies.get(COOKIE, "")
    if not SECRET_PATTERN.fullmatch(cookie):
        return _refused("this browser did not load the page (its cookie is missing); reload the page")
    if not hmac.compare_digest(form.get("csrf", "").encode(), csrf_value(page.secret, cookie).encode()):
        return _refused("the form's check value is missing or wrong; reload the page")
    choice, _, mode = form.get("decision", "").partition(":")
    if choice not in ("approve", "decline"):
        return _refused("the decision must be approve or decline", status=400)
    if page.view is None:
        return _refused("this plan has expired: nothing was decided", status=410)
    if choice == "decline":
        result = await site.decide(page, "declined", None)
    else:
        allowed = approvable_modes(page.view)
        chosen = next((m for m in allowed if m == (mode or allowed[0])), None)
        if chosen is None:
            return _refused(f"this plan can be approved as {' or '.join(allowed)} only", status=400)
        result = await site.decide(page, "approved", chosen)
    if not result.recorded:
        return RedirectResponse("./?already=1", status_code=303)
    return RedirectResponse("./", status_code=303)
