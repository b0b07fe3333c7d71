"""file/mkdir, file/move, file/rename and file/upload: what a quarantine is built from (efile-api.md section 5a).

All four go through the one request pipeline. A move (and a rename, and an upload that must not
overwrite) is not idempotent: sent twice, the second finds its source gone (911020) or its target taken
(911021), and a move whose answer was lost may well have happened. So these calls retry only what the
server turned away before acting (a rate limit, a 429, a connection never made); an outcome that is
unknown (a timeout after sending, a lost or unreadable answer, a gateway 5xx) is raised at once, for the
caller to learn the truth by listing both places, never by sending again blind.

mkdir with createParents is idempotent (an existing folder is fine) and is retried like a listing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ApiError, is_retryable, outcome_unknown
from ..models.wire import (
    FILE_MKDIR,
    FILE_MOVE,
    FILE_RENAME,
    FILE_UPLOAD,
    MOVE_BATCH_MAX,
    MOVE_SOURCES_MAX_BYTES,
    Duplicates,
    MkdirQuery,
    MoveForm,
    RenameForm,
)
from .transport import EfileTransport

__all__ = ["EfileMover", "move_batches", "retry_if_turned_away"]

EXISTS_CODE = "911021"


def retry_if_turned_away(exc: BaseException) -> bool:
    """Retry a call that is not idempotent only when the server cannot have acted on it."""
    return is_retryable(exc) and not outcome_unknown(exc)


def move_batches(
    paths: Sequence[str], *, max_paths: int = MOVE_BATCH_MAX, max_bytes: int = MOVE_SOURCES_MAX_BYTES
) -> list[list[str]]:
    """`paths` cut into batches for one `sourcePaths` field each: at most `max_paths`, at most `max_bytes`
    of comma-joined UTF-8 (a path longer than that alone goes alone)."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = 0
    for path in paths:
        length = len(path.encode("utf-8", "surrogatepass")) + 1
        if current and (len(current) >= max_paths or size + length > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(path)
        size += length
    if current:
        batches.append(current)
    return batches


class EfileMover:
    """Moves, renames, folders and small uploads on one region's efile API."""

    def __init__(self, transport: EfileTransport) -> None:
        self.transport = transport

    @property
    def concurrency(self) -> int:
        return self.transport.concurrency

    async def mkdir(self, path: str, *, create_parents: bool = True) -> None:
        """Make a folder; with `create_parents` an existing folder is fine (a 911021 is tolerated too)."""
        query = MkdirQuery(path=path, createParents=create_parents)
        try:
            await self.transport.call("POST", FILE_MKDIR, params=query.params())
        except ApiError as exc:
            if not (create_parents and exc.code == EXISTS_CODE):
                raise

    async def move(self, sources: Sequence[str], target: str, *, cover: Duplicates = "uncover") -> None:
        """Move `sources` into the folder `target`, keeping their names. ValueError for a source with a comma.

        An ApiError says the server refused (which path is not said: list both places); an error for
        which `errors.outcome_unknown` is true says nothing about what happened.
        """
        form = MoveForm.of(list(sources), target, cover=cover)
        await self.transport.call("POST", FILE_MOVE, data=form.form(), retry_if=retry_if_turned_away)

    async def rename(self, path: str, new_name: str) -> None:
        """Give `path` the name `new_name` in its folder (911021 if taken, 911700 for an illegal name)."""
        form = RenameForm(fileAbsolutePath=path, newName=new_name)
        await self.transport.call("POST", FILE_RENAME, data=form.form(), retry_if=retry_if_turned_away)

    async def upload(self, folder: str, name: str, content: bytes, *, cover: Duplicates = "uncover") -> None:
        """Write a small file `name` into `folder` (multipart); uncover fails with 911021 if it exists."""
        await self.transport.call(
            "POST",
            FILE_UPLOAD,
            data={"path": folder, "cover": cover},
            files={"file": (name, content, "application/octet-stream")},
            retry_if=is_retryable if cover == "cover" else retry_if_turned_away,
        )
