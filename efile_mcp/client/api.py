"""The non-destructive efile calls: listing, task status, task cancellation.

The one destructive call (async-remove) lives in `removal.py`, which only the guard imports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from ..errors import MalformedResponseError
from ..models.wire import (
    FILE_LIST,
    TASK_CANCEL,
    TASK_IDS_BATCH,
    TASK_IDS_HARD_MAX,
    TASK_LIST,
    FileListResult,
    FileOperTask,
    Order,
    OrderBy,
    TaskListResult,
)
from ._groups import task_group
from .transport import EfileTransport

T = TypeVar("T")

#: Ids per task/list request: the API takes up to 500 (efile-api.md; 100 is only its advice), so a
#: 2,000-task plan is followed with 4 requests a poll, not 20.
TASK_LIST_BATCH = TASK_IDS_HARD_MAX


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
        data = await self.list_dir_data(
            path, keyword=keyword, start=start, limit=limit, order_by=order_by, order=order, on_retry=on_retry
        )
        return self.parse_list(data)

    async def list_dir_data(
        self,
        path: str | None = None,
        *,
        keyword: str | None = None,
        start: int = 0,
        limit: int = 100,
        order_by: OrderBy | None = None,
        order: Order | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> Any:
        """file/list's `data` as the server sent it, unvalidated: the walker reads it straight into slim
        entries (client/walk.py `slim_page`) and validates it with `parse_list` only when it looks unusual."""
        params: dict[str, Any] = {"start": start, "limit": limit}
        if path is not None:
            params["path"] = path
        if keyword:
            params["keyWord"] = keyword
        if order_by:
            params["orderBy"] = order_by
        if order:
            params["order"] = order
        return await self.transport.call("GET", FILE_LIST, params=params, on_retry=on_retry)

    @staticmethod
    def parse_list(data: Any) -> FileListResult:
        return _parse(FileListResult.model_validate, data or {}, "/file/list")

    async def tasks(self, task_ids: Iterable[str]) -> TaskLookup:
        """Look tasks up, 500 ids a request, requests concurrent; ids the server does not return are not_found."""
        wanted = list(dict.fromkeys(task_ids))
        lookup = TaskLookup()

        async def fetch(chunk: Sequence[str]) -> None:
            data = await self.transport.call("POST", TASK_LIST, json={"taskIds": list(chunk)})
            for task in _parse(TaskListResult.from_data, data, "/file/task/list").file_oper_tasks:
                lookup.tasks[task.task_id] = task

        async with task_group() as tg:
            for chunk in chunked(wanted, TASK_LIST_BATCH):
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
