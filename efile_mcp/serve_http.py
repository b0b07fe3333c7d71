"""Streamable HTTP for shared deployments: the SDK's app behind a bearer token, served by uvicorn.

Every request needs `Authorization: Bearer <token>`. The token is EFILE_HTTP_TOKEN, or, when that is
unset, a random one kept in a 0600 file in the state directory (made at the first start, reused after,
so client configurations keep working); the file's path, never the token, is logged at start-up.
DNS-rebinding protection (Host and Origin) is the SDK's, as before: loopback by default, the named
EFILE_HTTP_ALLOWED_HOSTS beyond it.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import ConfigError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("efile_mcp.http")

TOKEN_FILE = "http-token"
REALM = "efile-mcp"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_MIN_TOKEN = 16
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class HttpToken:
    value: str
    file: Path | None = None  # None: EFILE_HTTP_TOKEN
    created: bool = False

    def __repr__(self) -> str:  # never the token itself
        return f"HttpToken(file={self.file!r}, created={self.created})"


def state_directory(settings: Settings) -> Path:
    if settings.state_dir is not None:
        return settings.state_dir
    from platformdirs import user_state_path

    return user_state_path("efile-mcp", appauthor=False)


def http_token(settings: Settings) -> HttpToken:
    """EFILE_HTTP_TOKEN, or the token in (or newly written to) `<state dir>/http-token`. ConfigError if unusable."""
    if settings.http_token is not None:
        value = settings.http_token.get_secret_value().strip()
        if len(value) < _MIN_TOKEN or not value.isascii() or not value.isprintable() or " " in value:
            raise ConfigError(
                f"invalid setting EFILE_HTTP_TOKEN: use at least {_MIN_TOKEN} printable ASCII characters without "
                "spaces (e.g. `openssl rand -hex 32`), or unset it for a generated one"
            )
        return HttpToken(value)
    path = state_directory(settings) / TOKEN_FILE
    fix = "or set EFILE_HTTP_TOKEN (or EFILE_STATE_DIR to another directory)"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return HttpToken(_read_token(path, fix), path, created=False)
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
        return HttpToken(_read_token(path, fix), path, created=created)
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

    The comparison is constant-time on bytes. Lifespan events pass through to the app.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = token.encode("ascii")
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

    def _authorized(self, scope: Scope) -> bool:
        given = b""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                scheme, _, credentials = bytes(value).strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credentials.strip()
                break
        return hmac.compare_digest(given, self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorized(scope):
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
    """Everything checked before serving: the address, the Host/Origin policy and the token."""

    host: str
    port: int
    security: TransportSecuritySettings | None
    token: HttpToken


def prepare(settings: Settings) -> HttpPlan:
    """Check the HTTP settings and find (or make) the token. Raises ConfigError; logs nothing."""
    security = transport_security(settings.http_host, settings.http_allowed_hosts)
    return HttpPlan(settings.http_host, settings.http_port, security, http_token(settings))


def serve(server: MCPServer[Any], plan: HttpPlan) -> None:
    """Serve until interrupted. uvicorn logs through our handler (log_config=None)."""
    import uvicorn

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
    app = BearerAuth(server.streamable_http_app(transport_security=plan.security, host=plan.host), plan.token.value)
    uvicorn.Server(uvicorn.Config(app, host=plan.host, port=plan.port, log_config=None)).run()
