"""Assemble the MCP server: settings -> path policy, signer, audit (checked now) -> lifespan state -> tools."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer

from . import __version__
from .client import EfileApi, EfileTransport, RetryPolicy, StaticToken, normalise_base_url
from .config import Settings
from .errors import ConfigError
from .guard.audit import AuditLog, default_audit_path
from .guard.paths import DEFAULT_PROTECTED, PathPolicy
from .guard.plans import RemovalGuard
from .guard.tokens import ConfirmationSigner
from .tools.registry import register
from .tools.state import ToolState

INSTRUCTIONS = """\
efile-mcp reaches the person's SCNet supercomputer storage. Use list_files to look around. To delete,
always dry-run remove_paths first, show the person the would_remove paths and sizes, and execute only
after they agree, passing the dry run's confirmation_token and exactly its confirm_paths. Deletion is
permanent. Follow queued removals with get_task.
"""


def build_server(settings: Settings) -> MCPServer[ToolState]:
    """Check everything that can be checked without the network, then return a ready server.

    Raises ConfigError (one line, naming the setting) for anything the person must fix.
    """
    if not settings.base_url:
        raise ConfigError(
            "EFILE_BASE_URL (or --base-url) is not set: give the efile URL of your SCNet region, "
            "or try efile-mcp on a local sandbox with `efile-mcp --sandbox`"
        )
    if settings.token is None or not settings.token.get_secret_value().strip():
        raise ConfigError("EFILE_TOKEN is not set: put your SCNet efile API token in the environment variable EFILE_TOKEN")
    try:
        policy = PathPolicy(settings.allowed_roots, DEFAULT_PROTECTED | frozenset(settings.protected))
    except ValueError as exc:
        raise ConfigError(f"invalid setting EFILE_ALLOWED_ROOTS (or --allowed-root): {exc}") from None
    audit = AuditLog(settings.audit_log or default_audit_path())
    secret = settings.confirm_secret.get_secret_value().encode() if settings.confirm_secret else secrets.token_bytes(32)
    base_url = normalise_base_url(settings.base_url)
    signer = ConfirmationSigner(secret=secret, ttl=settings.confirm_ttl, scope=base_url)
    token = StaticToken(settings.token.get_secret_value().strip())

    @asynccontextmanager
    async def lifespan(server: MCPServer[ToolState]) -> AsyncIterator[ToolState]:
        transport = EfileTransport(
            base_url,
            token,
            timeout=settings.request_timeout,
            retry=RetryPolicy(attempts=settings.retry_attempts, budget=settings.retry_budget),
            concurrency=settings.concurrency,
        )
        try:
            guard = None
            if not settings.read_only:
                guard = RemovalGuard(
                    policy=policy, signer=signer, audit=audit, transport=transport, max_paths=settings.max_paths
                )
            yield ToolState(settings=settings, api=EfileApi(transport), audit=audit, guard=guard)
        finally:
            await transport.aclose()

    server: MCPServer[ToolState] = MCPServer(
        "efile-mcp",
        title="SCNet efile (guarded removal)",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
    )
    register(server, settings)
    return server
