"""Turning our exceptions into MCP tool errors (isError) with the actionable text, never a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver.exceptions import ToolError

from ..errors import EfileMcpError


@asynccontextmanager
async def tool_errors() -> AsyncIterator[None]:
    try:
        yield
    except EfileMcpError as exc:
        raise ToolError(str(exc)) from None
