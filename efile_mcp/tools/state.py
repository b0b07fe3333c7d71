"""What every tool reads from the server's lifespan: typed, built once per server run, no globals."""

from __future__ import annotations

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


def state_of(ctx: Context[Any, Any]) -> ToolState:
    state = ctx.request_context.lifespan_context
    assert isinstance(state, ToolState), "efile-mcp tools need the efile-mcp lifespan"
    return state
