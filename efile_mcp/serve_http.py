"""Streamable HTTP for shared deployments: the SDK's app behind a bearer token, served by uvicorn.

Every request needs `Authorization: Bearer <token>`. The token is EFILE_HTTP_TOKEN, or, when that is
unset, a random one kept in a 0600 file in the state directory (made at the first start, reused after,
so client configurations keep working); the file's path, never the token, is logged at start-up.
DNS-rebinding protection (Host and Origin) is the SDK's, as before: loopback by default, the named
EFILE_HTTP_ALLOWED_HOSTS beyond it. EFILE_HTTP_TOKEN may list several tokens (comma-separated), one per
team or agent pool: each is a client of its own for the session limits.

Sessions are bounded on purpose (`SessionLimits`): each costs the SDK a task and memory (0.05-0.1 MB), and a
client that never closes its sessions (or reconnects in a loop) must not fill a replica for everyone.
The SDK closes a session idle for EFILE_HTTP_SESSION_IDLE_SECONDS; on top of its per-replica limit, a
bearer token may hold at most EFILE_HTTP_SESSION_MAX_PER_TOKEN sessions. A client over its share gets
429 (over the replica's, 503), with `Retry-After` saying when room is likely, and one JSON line saying
what to do; sessions of other tokens keep working. A session answers only the token that opened it.

SIGTERM stops a replica gracefully (`GracefulServer`): no new connection is accepted, open GET streams
(which only wait for notifications) are closed, and calls in flight get up to
EFILE_HTTP_SHUTDOWN_SECONDS to finish; a call still running after that is cancelled, and the removal
records it as interrupted in the audit log (the next start reconciles what it left open).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import secrets
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import uvicorn
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from .errors import ConfigError
from .settings import Settings

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("efile_mcp.http")

TOKEN_FILE = "http-token"
REALM = "efile-mcp"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_MIN_TOKEN = 16
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: The ASGI scope key under which `BearerAuth` leaves which token a request carried (its index, never the token).
CLIENT_KEY = "efile_mcp.client"
SESSION_HEADER = b"mcp-session-id"
#: A refused client is logged at most this often per token: a reconnect loop must not flood the log.
_REFUSAL_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class HttpToken:
    values: tuple[str, ...]
    file: Path | None = None  # None: EFILE_HTTP_TOKEN
    created: bool = False

    @property
    def value(self) -> str:
        """The first (or only) token: the one to show a client configuration."""
        return self.values[0]

    def __repr__(self) -> str:  # never the token itself
        return f"HttpToken(tokens={len(self.values)}, file={self.file!r}, created={self.created})"


def state_directory(settings: Settings) -> Path:
    if settings.state_dir is not None:
        return settings.state_dir
    from platformdirs import user_state_path

    return user_state_path("efile-mcp", appauthor=False)


def http_token(settings: Settings) -> HttpToken:
    """EFILE_HTTP_TOKEN, or the token in (or newly written to) `<state dir>/http-token`. ConfigError if unusable."""
    if settings.http_token is not None:
        values = tuple(part.strip() for part in settings.http_token.get_secret_value().split(",") if part.strip())
        for value in values or ("",):
            if len(value) < _MIN_TOKEN or not value.isascii() or not value.isprintable() or " " in value:
                raise ConfigError(
                    f"invalid setting EFILE_HTTP_TOKEN: use at least {_MIN_TOKEN} printable ASCII characters without "
                    "spaces (e.g. `openssl rand -hex 32`) per token, several separated by commas, or unset it for a "
                    "generated one"
                )
        if len(set(values)) != len(values):
            raise ConfigError("invalid setting EFILE_HTTP_TOKEN: a token is listed twice; give each client its own")
        return HttpToken(values)
    path = state_directory(settings) / TOKEN_FILE
    fix = "or set EFILE_HTTP_TOKEN (or EFILE_STATE_DIR to another directory)"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return HttpToken((_read_token(path, fix),), path, created=False)
        except FileNotFoundError:
            pass
        # Written whole under a temporary name, then linked into place: a replica starting at the same
        # moment reads a complete token or makes none, never a half-written file.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".http-token-")  # 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, path)
                created = True
            except FileExistsError:
                created = False
        finally:
            os.unlink(temporary)
        return HttpToken((_read_token(path, fix),), path, created=created)
    except OSError as exc:
        raise ConfigError(f"cannot use the HTTP token file {path}: {exc.strerror or exc}; {fix}") from None


def _read_token(path: Path, fix: str) -> str:
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, encoding="ascii", errors="replace") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the HTTP token file {path} is not a regular file: remove it, {fix}")
        if os.name == "posix" and info.st_mode & 0o077:
            raise ConfigError(
                f"the HTTP token file {path} is readable by other users (mode {stat.S_IMODE(info.st_mode):04o}): "
                f"`chmod 600` it, or delete it to get a new token, {fix}"
            )
        value = file.read().strip()
    if len(value) < _MIN_TOKEN or not value.isascii() or not value.isprintable() or " " in value:
        raise ConfigError(f"the HTTP token file {path} holds no usable token: delete it to get a new one, {fix}")
    return value


class BearerAuth:
    """ASGI middleware: an HTTP request without `Authorization: Bearer <token>` gets 401, nothing else.

    The comparison is constant-time on bytes, against every token (no early exit). The index of the
    token that matched goes into the scope under `CLIENT_KEY`. Lifespan events pass through to the app.
    """

    def __init__(self, app: ASGIApp, tokens: str | Collection[str]) -> None:
        self.app = app
        self._expected = [token.encode("ascii") for token in ((tokens,) if isinstance(tokens, str) else tokens)]
        self._body = (
            json.dumps(
                {
                    "error": "unauthorized",
                    "message": "efile-mcp needs 'Authorization: Bearer <token>' on every request: the token is the "
                    "server's EFILE_HTTP_TOKEN, or the one in the token file whose path the server logs at start-up",
                }
            ).encode()
            + b"\n"
        )

    def _client(self, scope: Scope) -> int | None:
        """The index of the token the request carries, or None."""
        given = b""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                scheme, _, credentials = bytes(value).strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credentials.strip()
                break
        found = None
        for index, expected in enumerate(self._expected):
            if hmac.compare_digest(given, expected):
                found = index
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = self._client(scope)
        if client is not None:
            scope[CLIENT_KEY] = client
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", f'Bearer realm="{REALM}"'.encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body})


def _json_refusal(status: int, retry_after: int | None, error: str, message: str) -> tuple[Message, Message]:
    body = json.dumps({"error": error, "message": message}).encode() + b"\n"
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.insert(0, (b"retry-after", str(retry_after).encode()))
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    return start, {"type": "http.response.body", "body": body}


def _sessionless(scope: Scope) -> bool:
    """A request of the 2026-07-28 era (its protocol version in a header, not a handshake one): no session is held."""
    version = next((bytes(v).decode("latin-1") for k, v in scope["headers"] if k == b"mcp-protocol-version"), None)
    return version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS


@dataclass
class _Session:
    client: int
    last_seen: float


@dataclass
class SessionLimits:
    """ASGI middleware (inside `BearerAuth`): the most sessions per bearer token and per replica, and a clear refusal.

    A POST without `Mcp-Session-Id` opens a session (except in the sessionless 2026-07-28 era). It is
    admitted while its token holds fewer than `max_per_client` sessions and the replica fewer than
    `max_sessions` (sessions being opened count);
    otherwise it gets 429 (its token's share is used) or 503 (the replica is full) with `Retry-After`:
    the seconds until the least recently used of the sessions in the way would be reaped as idle.

    Which sessions are still open is the SDK's to say (`live()`, the session manager's table: a session
    it reaped or a client deleted is gone from there), so this keeps no second lifecycle to drift from it.
    """

    app: ASGIApp
    live: Callable[[], Collection[str]]
    max_sessions: int
    max_per_client: int
    idle_seconds: float
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, _Session] = field(default_factory=dict)
    _opening: dict[int, int] = field(default_factory=dict)
    _last_refusal_log: dict[int, float] = field(default_factory=dict)

    def _prune(self) -> None:
        live = self.live()
        for session_id in [sid for sid in self._sessions if sid not in live]:
            del self._sessions[session_id]

    def open_sessions(self, client: int | None = None) -> int:
        """Sessions open (and being opened) on this replica, or for one token."""
        self._prune()
        if client is None:
            return len(self._sessions) + sum(self._opening.values())
        return sum(1 for s in self._sessions.values() if s.client == client) + self._opening.get(client, 0)

    def _retry_after(self, client: int | None) -> int:
        now = self.clock()
        waits = [
            s.last_seen + self.idle_seconds - now
            for s in self._sessions.values()
            if client is None or s.client == client
        ]
        return max(1, math.ceil(min(waits, default=self.idle_seconds)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session_id = next((bytes(v).decode("latin-1") for k, v in scope["headers"] if k == SESSION_HEADER), None)
        if session_id is not None:
            known = self._sessions.get(session_id)
            if known is not None and known.client != scope.get(CLIENT_KEY, 0):
                # A session answers only the token that opened it: to another, it does not exist (as the SDK
                # answers an unknown one), so one team can neither use nor count against another's sessions.
                start, body = _json_refusal(404, None, "session_not_found", "Session not found")
                await send(start)
                await send(body)
                return
            if known is not None:
                known.last_seen = self.clock()
            try:
                await self.app(scope, receive, send)
            finally:
                if known is not None:
                    known.last_seen = self.clock()
            return
        if scope["method"] != "POST" or _sessionless(scope):  # nothing held: the SDK answers
            await self.app(scope, receive, send)
            return
        client = int(scope.get(CLIENT_KEY, 0))
        refusal = self._refusal(client)
        if refusal is not None:
            for message in refusal:
                await send(message)
            return
        self._opening[client] = self._opening.get(client, 0) + 1
        opened: list[str] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                opened.extend(
                    bytes(v).decode("latin-1") for k, v in message.get("headers", ()) if k.lower() == SESSION_HEADER
                )
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._opening[client] -= 1
            if not self._opening[client]:
                del self._opening[client]
            if opened and opened[0] in self.live():
                self._sessions[opened[0]] = _Session(client, self.clock())

    def _refusal(self, client: int) -> tuple[Message, Message] | None:
        if self.open_sessions() >= self.max_sessions:
            retry = self._retry_after(None)
            self._log_refusal(client, f"the replica holds {self.max_sessions} sessions")
            return _json_refusal(
                503,
                retry,
                "server_full",
                f"this server already holds {self.max_sessions} open MCP sessions (EFILE_HTTP_SESSION_MAX): retry "
                f"in {retry} s, when idle ones will have been closed, or reach another replica",
            )
        if self.open_sessions(client) >= self.max_per_client:
            retry = self._retry_after(client)
            self._log_refusal(client, f"its token already holds {self.max_per_client} sessions")
            return _json_refusal(
                429,
                retry,
                "too_many_sessions",
                f"this bearer token already holds {self.max_per_client} open MCP sessions on this server (the most "
                "per token, EFILE_HTTP_SESSION_MAX_PER_TOKEN): close sessions you no longer use (HTTP DELETE, or "
                f"close the client), or retry in {retry} s, when idle ones will have been closed",
            )
        return None

    def _log_refusal(self, client: int, why: str) -> None:
        now = self.clock()
        if now - self._last_refusal_log.get(client, -math.inf) >= _REFUSAL_LOG_SECONDS:
            self._last_refusal_log[client] = now
            log.warning("refusing new MCP sessions for bearer token #%d: %s", client + 1, why)


@dataclass
class StreamsToClose:
    """ASGI middleware: GET streams (server-to-client notifications only) end when the replica stops.

    Left open, each would hold a graceful shutdown for its whole timeout; a client reopens one on the
    replica it reaches next. While stopping, a new GET stream is refused with 503.
    """

    app: ASGIApp
    stopping: bool = False
    _scopes: set[anyio.CancelScope] = field(default_factory=set)
    in_flight: int = 0

    def close_all(self) -> None:
        self.stopping = True
        for scope in list(self._scopes):
            scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "GET":
            self.in_flight += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.in_flight -= 1
            return
        if self.stopping:
            start, body = _json_refusal(503, 1, "stopping", "this server is stopping: reconnect (to another replica)")
            await send(start)
            await send(body)
            return
        started = ended = False

        async def watch(message: Message) -> None:
            nonlocal started, ended
            started = started or message["type"] == "http.response.start"
            ended = ended or (message["type"] == "http.response.body" and not message.get("more_body", False))
            await send(message)

        with anyio.CancelScope() as cancel:
            self._scopes.add(cancel)
            try:
                await self.app(scope, receive, watch)
            finally:
                self._scopes.discard(cancel)
        if cancel.cancelled_caught and started and not ended:  # end the stream cleanly: the client reconnects
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def transport_security(host: str, allowed_hosts: tuple[str, ...]) -> TransportSecuritySettings | None:
    """DNS-rebinding protection: the SDK's own for loopback; for any other address, only the named hosts.

    A server that deletes files must not answer a web page that rebinds a name to it, and must not be
    reachable under a Host header nobody chose.
    """
    if host in LOOPBACK:
        return None  # the SDK enables loopback-only Host/Origin checks by itself
    if not allowed_hosts:
        raise ConfigError(
            f"--host {host} exposes efile-mcp beyond this machine: set EFILE_HTTP_ALLOWED_HOSTS to the host names "
            "(with port) clients use, e.g. efile-mcp.internal:8765, and put TLS in front"
        )
    from mcp.server.transport_security import TransportSecuritySettings

    origins = [f"{scheme}://{name}" for name in allowed_hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=list(allowed_hosts), allowed_origins=origins
    )


def endpoint(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/mcp" if ":" in host else f"http://{host}:{port}/mcp"


@dataclass(frozen=True)
class HttpPlan:
    """Everything checked before serving: the address, the Host/Origin policy, the tokens and the session bounds."""

    host: str
    port: int
    security: TransportSecuritySettings | None
    token: HttpToken
    session_idle_seconds: float = 300.0
    session_max: int = 300
    session_max_per_token: int = 100
    shutdown_seconds: float = 30.0


def prepare(settings: Settings) -> HttpPlan:
    """Check the HTTP settings and find (or make) the token. Raises ConfigError; logs nothing."""
    security = transport_security(settings.http_host, settings.http_allowed_hosts)
    return HttpPlan(
        settings.http_host,
        settings.http_port,
        security,
        http_token(settings),
        session_idle_seconds=settings.http_session_idle_seconds,
        session_max=settings.http_session_max,
        session_max_per_token=settings.http_session_max_per_token,
        shutdown_seconds=settings.http_shutdown_seconds,
    )


def build_app(server: MCPServer[Any], plan: HttpPlan) -> tuple[ASGIApp, StreamsToClose]:
    """The served app: bearer token -> session limits -> GET streams closable at shutdown -> the SDK's app."""
    sdk_app = server.streamable_http_app(
        transport_security=plan.security,
        host=plan.host,
        session_idle_timeout=plan.session_idle_seconds,
        max_sessions=plan.session_max,
    )
    manager = server.session_manager
    streams = StreamsToClose(sdk_app)
    limits = SessionLimits(
        streams,
        # The SDK's table of open sessions: what it reaped (idle) or a client deleted is gone from it.
        live=lambda: manager._server_instances,
        max_sessions=plan.session_max,
        max_per_client=plan.session_max_per_token,
        idle_seconds=plan.session_idle_seconds,
    )
    return with_review_pages(server, BearerAuth(limits, plan.token.values)), streams


def with_review_pages(server: MCPServer[Any], app: ASGIApp) -> ASGIApp:
    """The person's review pages (/review/...) beside the MCP endpoint, outside the bearer token: a browser has
    none; each page is behind its own secret and checks Host, Origin, cookie and CSRF (efile_mcp.review)."""
    from .server import review_site_of

    site = review_site_of(server)
    if site is None:
        return app
    pages = site.app

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith("/review/"):
            await pages(scope, receive, send)
        else:
            await app(scope, receive, send)

    return routed


def serve(server: MCPServer[Any], plan: HttpPlan) -> None:
    """Serve until interrupted (SIGTERM/SIGINT: gracefully). uvicorn logs through our handler (log_config=None)."""
    url = endpoint(plan.host, plan.port)
    log.info("serving MCP over Streamable HTTP at %s", url)
    if plan.token.file is None:
        log.info("HTTP clients authenticate with 'Authorization: Bearer <EFILE_HTTP_TOKEN>'")
    else:
        log.warning(
            "HTTP clients must send 'Authorization: Bearer <token>' with the token in %s (%s)",
            plan.token.file,
            "made now" if plan.token.created else "kept from an earlier start",
        )
    app, streams = build_app(server, plan)
    # sse-starlette ends every SSE stream at the first SIGTERM, the answers of calls in flight too; we end
    # only the GET streams (StreamsToClose) and let the calls finish.
    from sse_starlette.sse import AppStatus

    AppStatus.enable_automatic_graceful_drain = False  # what its (untyped) disable_automatic_graceful_drain() does
    config = uvicorn.Config(
        app,
        host=plan.host,
        port=plan.port,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(plan.shutdown_seconds),
    )
    GracefulServer(config, streams).run()


class GracefulServer(uvicorn.Server):
    """uvicorn's server, closing GET streams first when it stops, so that only real calls are waited for."""

    def __init__(self, config: uvicorn.Config, streams: StreamsToClose) -> None:
        super().__init__(config)
        self._streams = streams

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._streams.close_all()
        if self._streams.in_flight:
            log.warning(
                "stopping: waiting up to %s s for %d call(s) in flight",
                self.config.timeout_graceful_shutdown,
                self._streams.in_flight,
            )
        try:
            await super().shutdown(sockets)
        finally:
            from sse_starlette.sse import AppStatus

            AppStatus.should_exit = True  # whatever stream is left ends now
