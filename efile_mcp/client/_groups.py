"""Task groups that surface one error from `efile_mcp.errors` instead of an ExceptionGroup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from ..errors import AuthError


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        # Cancellation and interpreter exits keep their group: they must propagate untouched.
        if not all(isinstance(exc, Exception) for exc in leaves):
            raise
        # An auth failure says the most (the fix is the person's), so it wins over the rest.
        chosen = next((exc for exc in leaves if isinstance(exc, AuthError)), leaves[0])
        raise chosen from None
