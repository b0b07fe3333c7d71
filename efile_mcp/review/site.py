"""The review page's site: one secret URL per plan, the loopback listener that serves it, the browser.

An adapter of the guard's `ReviewPages` port, with no policy of its own: it shows a plan and records the
person's Approve or Decline in the state store (`StateStore.decide`, channel `review_page`), where the
guard's removal reads it. Whether a person must decide, how long to wait and what a decision is worth
are the guard's.

The URL carries a secret of 256 bits (`secrets.token_urlsafe(32)`); the store keeps only its SHA-256,
under `review-<hex>` (a key no removal plan id has), for as long as the plan lives and an hour more, so
that an expired plan's page can still say so. In stdio mode the pages are served by a listener on
127.0.0.1 (an ephemeral port) started in the server's event loop on first need and stopped with the
server; in HTTP mode by routes of the HTTP app itself (`efile_mcp.serve_http`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from ..guard.ports import Decision, DecisionKind, RemoveMode
from ..guard.seen import load_header
from .view import PlanView

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from ..guard.store import PlanState, StateStore

log = logging.getLogger("efile_mcp.review")

#: Key prefix of a page's record in the state store (removal plan ids have no dash).
KEY_PREFIX = "review-"
#: Seconds a page's record outlives its plan: the page of an expired plan says so instead of 404.
AFTERLIFE = 3600.0
#: What a page secret looks like: token_urlsafe(32).
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
#: Plans whose view is kept in memory at once: each holds its folders' totals and about 24 bytes a path
#: (view.py), about 24 MB for a plan of a million paths.
VIEWS_KEPT = 4

BrowserSetting = Literal["auto", "never"]
#: What the page says a plan's state is.
PageStatus = Literal["pending", "approved", "declined", "running", "done", "spent", "expired"]

#: The child that opens the browser: it outlives a server that stops at once, and removes the launcher file
#: (which holds the page's secret) once the browser has had ample time to read it.
_OPENER = """\
import os, sys, time, urllib.parse, webbrowser
url = sys.stdin.readline().strip()
opened = bool(url) and webbrowser.open(url)
if url.startswith("file://"):
    time.sleep(30)
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    for remove in (os.remove, os.rmdir):
        try:
            remove(path)
        except OSError:
            break
        path = os.path.dirname(path)
sys.exit(0 if opened else 1)
"""
#: The launcher a browser is started with: a private file that sends it on to the page (see `_launcher`).
_LAUNCHER_REFRESH = re.compile(r'<meta http-equiv="refresh" content="0;url=([^"]+)">')


def page_address_of(opened: str) -> str:
    """The page address a browser was given: itself, or the one a private launcher file sends it to."""
    if not opened.startswith("file://"):
        return opened
    import html
    from urllib.parse import unquote, urlsplit

    text = Path(unquote(urlsplit(opened).path)).read_text(encoding="utf-8")
    found = _LAUNCHER_REFRESH.search(text)
    if found is None:
        raise ValueError(f"{opened} is not a review page launcher")
    return html.unescape(found.group(1))


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class PageRecord:
    """What the store keeps for one page: the plan it shows. Never the secret."""

    plan_id: str
    expires_at: float

    def to_bytes(self) -> bytes:
        return json.dumps({"p": self.plan_id, "e": self.expires_at}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PageRecord | None:
        try:
            raw = json.loads(data)
            return cls(str(raw["p"]), float(raw["e"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Page:
    """One request's view of a page: the plan (None once expired) and where it stands now."""

    secret: str
    record: PageRecord
    status: PageStatus
    state: PlanState | None
    view: PlanView | None


@dataclass(frozen=True)
class Recorded:
    """What a POST did: `recorded` is True when this decision is the one that stands."""

    recorded: bool
    status: PageStatus
    decision: Decision | None


def page_status(state: PlanState | None, plan_alive: bool) -> PageStatus:
    if not plan_alive:
        return "expired"
    if state is None or state.pending:
        return "pending"
    status = state.status
    if status in ("approved", "declined", "running", "done", "spent"):
        return status
    return "pending"


class ReviewSite:
    """Implements `ReviewPages`: `url_for` a plan's page, `show` it in the person's browser; serves the pages."""

    def __init__(
        self,
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        browser: BrowserSetting = "auto",
        public_base: str | None = None,
        allowed_hosts: tuple[str, ...] = (),
        stderr: TextIO | None = None,
    ) -> None:
        """`public_base` (e.g. http://127.0.0.1:8765): the pages are routes of that HTTP app; None: a
        loopback listener of our own, started on first need. `allowed_hosts`: Host values accepted
        beyond the loopback names with the serving port."""
        self.store = store
        self.clock = clock
        self.browser = browser
        self.public_base = public_base.rstrip("/") if public_base else None
        self.extra_hosts = tuple(h.lower() for h in allowed_hosts)
        self._stderr = stderr
        #: The private folder of browser launchers (see `show`), made on first need, removed at close.
        self._launchers: Path | None = None
        self._urls: dict[str, tuple[str, float]] = {}
        self._views: OrderedDict[str, PlanView] = OrderedDict()
        self._view_locks: dict[str, asyncio.Lock] = {}
        self._listener: _Listener | None = None
        self._start_lock = asyncio.Lock()
        self._app: ASGIApp | None = None

    # ------------------------------------------------------------------ the port

    async def url_for(self, plan_id: str, expires_at: float) -> str:
        now = self.clock()
        for known in [pid for pid, (_, until) in self._urls.items() if until <= now]:
            del self._urls[known]
        base = await self._base()
        known_url = self._urls.get(plan_id)
        if known_url is not None:
            return f"{base}/review/{known_url[0]}/"
        secret = secrets.token_urlsafe(32)
        record = PageRecord(plan_id, float(expires_at))
        await self.store.save_plan(KEY_PREFIX + secret_digest(secret), record.to_bytes(), expires_at + AFTERLIFE)
        self._urls[plan_id] = (secret, float(expires_at))
        return f"{base}/review/{secret}/"

    def show(self, url: str) -> bool:
        """Open the page in the person's browser, never putting its secret on a command line.

        `webbrowser` starts `$BROWSER <address>` / `xdg-open <address>`, and on a shared login node every
        user can read a process's command line (`ps`). So the browser is given a private file instead
        (mode 0600 in a 0700 folder) that sends it on to the page: only the person's own account can read it.
        """
        if self.browser == "never":
            self._tell(url, "EFILE_REVIEW_BROWSER=never")
            return False
        if not browser_available():
            self._tell(url, "no web browser found here")
            return False
        try:
            # A child opens the browser: its output goes to stderr, never to stdout (the MCP stream in stdio
            # mode), $BROWSER is honoured, and a browser command that waits does not hold up the server.
            child = subprocess.Popen(
                [sys.executable, "-c", _OPENER],
                stdin=subprocess.PIPE,
                stdout=sys.stderr.fileno() if _has_fileno(sys.stderr) else subprocess.DEVNULL,
                stderr=sys.stderr.fileno() if _has_fileno(sys.stderr) else subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,
            )
            assert child.stdin is not None
            # Neither our child's argv nor the browser's carries the secret: a pipe, then a private file.
            child.stdin.write(self._launcher(url).encode() + b"\n")
            child.stdin.close()
        except OSError as exc:
            self._tell(url, f"the browser could not be started ({exc.strerror or exc})")
            return False
        threading.Thread(target=child.wait, name="efile-review-browser", daemon=True).start()
        return True

    def _launcher(self, url: str) -> str:
        """A file:// address of a private page that redirects to `url` (created once per site, 0700/0600)."""
        import html
        import tempfile

        if self._launchers is None:
            self._launchers = Path(tempfile.mkdtemp(prefix="efile-review-"))  # mode 0700
        path = self._launchers / f"open-{secrets.token_hex(8)}.html"
        escaped = html.escape(url, quote=True)
        body = (
            f'<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
            f'<meta http-equiv="refresh" content="0;url={escaped}">'
            f'<title>efile-mcp review</title><p><a href="{escaped}">Open the review page</a></p>\n'
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(body)
        return path.as_uri()

    def _tell(self, url: str, why: str) -> None:
        out = self._stderr or sys.stderr
        out.write(
            f"efile-mcp: review page of a removal (not opened: {why}): {url} - open it in a browser on this "
            "machine to approve or decline, or run `efile-mcp approve` in a terminal\n"
        )
        out.flush()

    # ------------------------------------------------------------------ serving

    @property
    def app(self) -> ASGIApp:
        """The pages as an ASGI app: every path under /review/ (anything else is 404)."""
        if self._app is None:
            from .app import review_app

            self._app = review_app(self)
        return self._app

    async def _base(self) -> str:
        if self.public_base is not None:
            return self.public_base
        async with self._start_lock:
            if self._listener is None:
                self._listener = await _Listener.start(self.app)
                log.info("review pages are served at http://127.0.0.1:%d/review/", self._listener.port)
        return f"http://127.0.0.1:{self._listener.port}"

    def allowed_hosts(self) -> frozenset[str]:
        """Host header values a page may be asked under (lower case): loopback with the serving port, the
        public base's own, and the configured names. Anything else is a DNS-rebinding attempt or a mistake."""
        hosts = set(self.extra_hosts)
        if self._listener is not None:
            hosts.update(_loopback(self._listener.port))
        if self.public_base is not None:
            from urllib.parse import urlsplit

            parts = urlsplit(self.public_base)
            hosts.update(_loopback(parts.port or (443 if parts.scheme == "https" else 80)))
            hosts.add(parts.netloc.lower())
        return frozenset(hosts)

    async def aclose(self) -> None:
        """Stop the listener (stdio mode); the pages' records stay in the store until they expire."""
        listener, self._listener = self._listener, None
        if self._launchers is not None:
            shutil.rmtree(self._launchers, ignore_errors=True)
            self._launchers = None
        self._urls.clear()
        self._views.clear()
        # A later start may run in another event loop (a test's next client): fresh locks, not bound to this one.
        self._view_locks = {}
        self._start_lock = asyncio.Lock()
        if listener is not None:
            await listener.stop()

    # ------------------------------------------------------------------ what the routes ask

    async def page(self, secret: str) -> Page | None:
        """The page a secret opens, or None (unknown, altered, or long expired): the routes answer 404."""
        if not SECRET_PATTERN.fullmatch(secret):
            return None
        data = await self.store.load_plan(KEY_PREFIX + secret_digest(secret))
        record = PageRecord.from_bytes(data) if data is not None else None
        if record is None:
            return None
        view = await self._view(record.plan_id, record.expires_at)
        state = await self.store.plan_state(record.plan_id)
        return Page(secret, record, page_status(state, view is not None), state, view)

    async def _view(self, plan_id: str, expires_at: float) -> PlanView | None:
        """The plan's view: built once from the stored plan's header and rows (read a chunk at a time), kept
        while the plan lives; None once it expired or lost rows."""
        if self.clock() >= expires_at:
            self._views.pop(plan_id, None)
            return None
        view = self._views.get(plan_id)
        if view is None:
            # One build per plan at a time; other plans' pages (and their status polls) do not wait for it.
            lock = self._view_locks.setdefault(plan_id, asyncio.Lock())
            try:
                async with lock:
                    view = self._views.get(plan_id) or await self._build(plan_id)
            finally:
                if not lock.locked():
                    self._view_locks.pop(plan_id, None)
            if view is None:
                return None
        self._views[plan_id] = view
        self._views.move_to_end(plan_id)
        while len(self._views) > VIEWS_KEPT:
            self._views.popitem(last=False)
        return view

    async def _build(self, plan_id: str) -> PlanView | None:
        plan = await load_header(self.store, plan_id)  # the rows are read by the view (guard/seen.py)
        if plan is None:
            return None
        try:
            return await PlanView.load(self.store, plan, self.clock())
        except LookupError:  # rows expired or lost meanwhile
            return None

    async def decide(self, page: Page, kind: DecisionKind, mode: RemoveMode | None) -> Recorded:
        """Record the person's decision, if the plan still waits for one (the first decision wins)."""
        if page.status != "pending":
            return Recorded(False, page.status, page.state.decision if page.state else None)
        decision = Decision(kind=kind, channel="review_page", mode=mode, at=self.clock())
        after = await self.store.decide(page.record.plan_id, page.record.expires_at, decision)
        recorded = after.decision == decision
        return Recorded(recorded, page_status(after, True), after.decision)


def approvable_modes(view: PlanView) -> tuple[RemoveMode, ...]:
    """The modes the person may approve: the plan's own, and quarantine instead of a permanent delete.

    Never delete instead of quarantine: a quarantine plan may hold folders a delete refuses (links inside).
    A purge (paths inside a quarantine) is permanent whatever is chosen: it offers no quarantine it cannot give.
    """
    if view.plan.mode != "delete":
        return ("quarantine",)
    if view.has_quarantine_path:
        return ("delete",)
    return ("delete", "quarantine")


def _loopback(port: int) -> tuple[str, ...]:
    return (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}")


def _has_fileno(stream: TextIO) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    return True


_CONSOLE_BROWSERS = frozenset({"www-browser", "links", "elinks", "lynx", "w3m", "links2"})


def browser_available() -> bool:
    """Whether `webbrowser` would reach a graphical browser: $BROWSER, macOS, Windows, or a desktop session.

    A text browser in the terminal does not count: from an MCP server it would fight the client for the
    terminal (stdin is the MCP stream).
    """
    if os.environ.get("BROWSER", "").strip():
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import webbrowser

    try:
        found = webbrowser.get()
    except webbrowser.Error:
        return False
    return getattr(found, "name", "") not in _CONSOLE_BROWSERS


class _Listener:
    """uvicorn on 127.0.0.1:<ephemeral>, as a task in the server's event loop."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket, task: asyncio.Task[None]) -> None:
        self.server = server
        self.sock = sock
        self.task = task
        self.port: int = sock.getsockname()[1]

    @classmethod
    async def start(cls, app: ASGIApp) -> _Listener:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        config = uvicorn.Config(
            app,
            log_config=None,
            lifespan="off",
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=2,
        )
        server = _quiet_server(config)
        # Bound and listening already: a browser that connects before uvicorn accepts waits in the backlog.
        task = asyncio.create_task(server.serve(sockets=[sock]), name="efile-review-listener")
        return cls(server, sock, task)

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=5)
        except (TimeoutError, asyncio.CancelledError):
            self.task.cancel()
        except Exception:  # pragma: no cover - a listener that failed: nothing left to stop
            log.exception("the review page listener failed")
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()


def _quiet_server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn without its signal handlers: Ctrl-C and SIGTERM stay the MCP server's."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer(config)
