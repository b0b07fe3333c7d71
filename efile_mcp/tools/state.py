"""What every tool reads from the server's lifespan: typed, built once per server run, no globals.

Tools hold the settings and the guard, nothing else: every API call, policy decision and audit line
goes through the guard (an import-linter contract keeps the client out of this package).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context

from ..guard.guard import Guard
from ..guard.requests import Progress
from ..settings import Settings


@dataclass(frozen=True)
class ToolState:
    settings: Settings
    guard: Guard


def state_of(ctx: Context[Any, Any]) -> ToolState:
    state = ctx.request_context.lifespan_context
    assert isinstance(state, ToolState), "efile-mcp tools need the efile-mcp lifespan"
    return state


def progress_of(ctx: Context[Any, Any]) -> Progress:
    """The guard's progress callback: MCP progress notifications (a no-op unless the caller asked for them)."""

    async def report(done: float, total: float | None, message: str | None) -> None:
        await ctx.report_progress(done, total, message)

    return report
