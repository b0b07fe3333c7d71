"""Turning our exceptions into MCP tool errors (isError) with the actionable text, never a traceback."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver.exceptions import ToolError

from ..errors import EfileMcpError, StateStoreError

log = logging.getLogger("efile_mcp.store")


#: What an agent reads while the state store cannot be used; where and why go to the server's log (for the operator).
STATE_STORE_UNREACHABLE = "the state store is unreachable; nothing was deleted; retry in a moment"
_store_logged_at = -math.inf


@asynccontextmanager
async def tool_errors() -> AsyncIterator[None]:
    global _store_logged_at
    try:
        yield
    except StateStoreError as exc:  # a redemption that raised it decided nothing, so nothing was sent
        if time.monotonic() - _store_logged_at >= 10:  # an outage under load: a line every 10 s, not one per call
            _store_logged_at = time.monotonic()
            log.warning("tool calls fail: %s", exc)
        raise ToolError(STATE_STORE_UNREACHABLE) from None
    except EfileMcpError as exc:
        raise ToolError(str(exc)) from None
