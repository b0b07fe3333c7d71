"""What every tool reads from the server's lifespan: typed, built once per server run, no globals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context

from ..client import EfileApi
from ..config import Settings
from ..guard.audit import AuditLog
from ..guard.plans import RemovalGuard


@dataclass(frozen=True)
class ToolState:
    settings: Settings
    api: EfileApi
    audit: AuditLog
    guard: RemovalGuard | None  # None in read-only mode: no destructive path exists at all
    #: Awaited before the guard judges paths: resolves `~` roots once the home is known (needs the network).
    prepare: Callable[[], Awaitable[None]] | None = None


def state_of(ctx: Context[Any, Any]) -> ToolState:
    state = ctx.request_context.lifespan_context
    assert isinstance(state, ToolState), "efile-mcp tools need the efile-mcp lifespan"
    return state
