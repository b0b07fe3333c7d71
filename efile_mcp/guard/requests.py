"""What the guard's two halves share: the refusal, a removal request, progress, selections as plan keys."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import GuardRefusal as GuardRefusal
from ..models.results import Selection

log = logging.getLogger("efile_mcp.guard")

TOOL = "remove_paths"
#: A refusal names at most this many paths in the audit log (each cut to 300 characters).
REFUSED_PATHS_AUDITED = 200


Progress = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class RemovalRequest:
    """What an execution (or the person's form) is asked for: a token, and optionally paths or a selection to match."""

    token: str | None
    paths: Sequence[str] | None = None
    select: Selection | None = None


def selection_key(selection: Selection) -> dict[str, Any]:
    return selection.model_dump(exclude_none=True)


def walk_progress(progress: Progress | None) -> Callable[[int, int], Awaitable[None]] | None:
    if progress is None:
        return None

    async def report(entries: int, folders: int) -> None:
        await progress(entries, None, f"{entries} entries in {folders} folders read")

    return report


def ancestors_in(path: str, paths: set[str]) -> list[str]:
    found = []
    index = path.find("/", 1)
    while index != -1:
        if path[:index] in paths:
            found.append(path[:index])
        index = path.find("/", index + 1)
    return found


def holds_any(ordered: Sequence[str], folder: str) -> bool:
    """Whether one of the sorted paths `ordered` lies inside `folder` (the other way round from `ancestors_in`)."""
    at = bisect.bisect_left(ordered, folder + "/")
    return at < len(ordered) and ordered[at].startswith(folder + "/")
