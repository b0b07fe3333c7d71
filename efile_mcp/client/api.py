"""The non-destructive efile calls: listing, task status, task cancellation.

The one destructive call (async-remove) lives in `removal.py`, which only the guard imports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from ..errors import AuthError, EfileMcpError, MalformedResponseError, NotFoundError
from ..models.wire import (
    FILE_LIST,
    TASK_CANCEL,
    TASK_IDS_BATCH,
    TASK_LIST,
    FileEntry,
    FileListResult,
    FileOperTask,
    Order,
    OrderBy,
    TaskListResult,
)
from ._groups import task_group
from .transport import EfileTransport

T = TypeVar("T")

#: Page size used when the whole of a directory is read (dry runs).
LIST_PAGE_SIZE = 1000


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _parse(parse: Callable[[Any], T], data: Any, endpoint: str) -> T:
    """An answer whose `data` does not have the documented shape is a malformed answer, not a crash."""
    try:
        return parse(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "data"
        raise MalformedResponseError(endpoint, f"{where}: {first['msg']}") from None


@dataclass
class ParentLookup:
    found: dict[str, FileEntry] = field(default_factory=dict)
    failed: dict[str, EfileMcpError] = field(default_factory=dict)


@dataclass
class TaskLookup:
    tasks: dict[str, FileOperTask] = field(default_factory=dict)
    not_found: list[str] = field(default_factory=list)


class EfileApi:
    def __init__(self, transport: EfileTransport) -> None:
        self.transport = transport

    async def list_dir(
        self,
        path: str | None = None,
        *,
        keyword: str | None = None,
        start: int = 0,
        limit: int = 100,
        order_by: OrderBy | None = None,
        order: Order | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> FileListResult:
        params: dict[str, Any] = {"start": start, "limit": limit}
        if path is not None:
            params["path"] = path
        if keyword:
            params["keyWord"] = keyword
        if order_by:
            params["orderBy"] = order_by
        if order:
            params["order"] = order
        data = await self.transport.call("GET", FILE_LIST, params=params, on_retry=on_retry)
        return _parse(FileListResult.model_validate, data or {}, "/file/list")

    async def iter_dir(
        self, path: str, *, keyword: str | None = None, page_size: int = LIST_PAGE_SIZE
    ) -> AsyncIterator[FileEntry]:
        """Every entry of a directory, page by page; the pages after the first are fetched concurrently."""
        first = await self.list_dir(path, keyword=keyword, start=0, limit=page_size, order_by="name", order="asc")
        for entry in first.file_list:
            yield entry
        if first.total <= len(first.file_list) or not first.file_list:
            return
        # Step by what the server actually returned: one that caps pages below `limit` must not make
        # whole ranges go unread.
        step = len(first.file_list)
        starts = range(step, first.total, step)
        pages: dict[int, list[FileEntry]] = {}

        async def fetch(start: int) -> None:
            page = await self.list_dir(path, keyword=keyword, start=start, limit=step, order_by="name", order="asc")
            pages[start] = page.file_list

        async with task_group() as tg:
            for start in starts:
                tg.start_soon(fetch, start)
        for start in starts:
            for entry in pages.get(start, ()):
                yield entry

    async def find_in_parents(self, paths: Iterable[str]) -> ParentLookup:
        """Each path's entry, from one (paged) listing per distinct parent, not one call per path.

        A parent holding one wanted name is listed with keyWord set to that name, so a lone file in a
        huge directory costs one small page. A parent that is gone (911020) leaves its paths unfound;
        one that cannot be listed for another reason puts its paths in `failed`. An auth failure
        stops the lookup: nothing per path can be said.
        """
        by_parent: dict[str, set[str]] = {}
        for path in paths:
            parent, _, name = path.rpartition("/")
            by_parent.setdefault(parent or "/", set()).add(name)
        lookup = ParentLookup()

        async def list_parent(parent: str, names: set[str]) -> None:
            keyword = next(iter(names)) if len(names) == 1 else None
            prefix = parent.rstrip("/") + "/"
            try:
                async for entry in self.iter_dir(parent, keyword=keyword):
                    if entry.name in names:
                        lookup.found[prefix + entry.name] = entry
            except NotFoundError:
                return
            except AuthError:
                raise
            except EfileMcpError as exc:
                lookup.failed.update(dict.fromkeys((prefix + name for name in names), exc))

        async with task_group() as tg:
            for parent, names in by_parent.items():
                tg.start_soon(list_parent, parent, names)
        return lookup

    async def tasks(self, task_ids: Iterable[str]) -> TaskLookup:
        """Look tasks up, 100 ids a request, requests concurrent; ids the server does not return are not_found."""
        wanted = list(dict.fromkeys(task_ids))
        lookup = TaskLookup()

        async def fetch(chunk: Sequence[str]) -> None:
            data = await self.transport.call("POST", TASK_LIST, json={"taskIds": list(chunk)})
            for task in _parse(TaskListResult.from_data, data, "/file/task/list").file_oper_tasks:
                lookup.tasks[task.task_id] = task

        async with task_group() as tg:
            for chunk in chunked(wanted, TASK_IDS_BATCH):
                tg.start_soon(fetch, chunk)
        lookup.not_found = [task_id for task_id in wanted if task_id not in lookup.tasks]
        return lookup

    async def cancel(self, task_ids: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(task_ids))
        async with task_group() as tg:
            for chunk in chunked(wanted, TASK_IDS_BATCH):
                tg.start_soon(self._cancel_chunk, chunk)

    async def _cancel_chunk(self, chunk: Sequence[str]) -> None:
        await self.transport.call("POST", TASK_CANCEL, json={"taskIds": list(chunk)})
