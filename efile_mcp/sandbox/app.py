"""The sandbox efile API: a Starlette app over a local directory, plus the state tests inspect.

Answers are built from the wire models (`efile_mcp.models.wire`), so the sandbox and the client
read and write the same shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from efile_mcp.models.wire import (
    ASYNC_REMOVE,
    FILE_LIST,
    REMOVE_BATCH_MAX,
    SUCCESS_CODE,
    TASK_CANCEL,
    TASK_IDS_HARD_MAX,
    TASK_LIST,
    Envelope,
    FileOperTask,
    RemoveResult,
    SourcePath,
    TaskIds,
    TaskListResult,
)
from efile_mcp.sandbox.ac import AcConfig, SandboxAc
from efile_mcp.sandbox.faults import FaultPlan
from efile_mcp.sandbox.fs import (
    ApiError,
    PathMapper,
    count_tree,
    delete_now,
    format_time,
    iter_delete,
    list_directory,
    pull,
)

Fault = Callable[[str, Request], Awaitable[Response | None]]

CLUSTER = "sandbox"
#: Entries the worker deletes per thread hop when no step delay is asked for.
_WORKER_CHUNK = 256


@dataclass
class SandboxConfig:
    root: Path
    user: str = "demo"
    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    #: Simulated round trip added to every request, in seconds.
    delay: float = 0.0
    #: A remove request holding at most this many entries (recursively) runs inline; else it is queued.
    inline_max_entries: int = 200
    #: Seconds the worker sleeps per deleted entry, so tests can watch waiting -> processing -> complete.
    task_step_delay: float = 0.0
    list_max_limit: int = 1000
    #: Return at most this many entries per file/list page, whatever `limit` asks (a server that caps pages).
    list_page_cap: int | None = None
    #: Answer task/list `data` as a bare list instead of `{"fileOperTasks": [...]}`.
    task_list_as_bare_list: bool = False
    #: The SCNet AC service (sign-in, renewal, center) and the account it knows; see ac.py.
    ac: AcConfig = field(default_factory=AcConfig)

    def __post_init__(self) -> None:
        self.root = Path(self.root)


def _answer(code: str, msg: str | None, data: Any = None) -> JSONResponse:
    return JSONResponse(Envelope(code=code, msg=msg, data=data).model_dump(by_alias=True))


def _ok(data: Any = None) -> JSONResponse:
    return _answer(SUCCESS_CODE, "success", data)


def _dump(task: FileOperTask) -> dict[str, Any]:
    return task.model_dump(by_alias=True)


def _progress(task: FileOperTask) -> str:
    total = task.total_num or 0
    done = task.processed_num or 0
    return f"{100 if total == 0 else min(100, done * 100 // total)}%"


class Sandbox:
    """State of one sandbox server: config, tasks, and the record of what it received and deleted.

    Records are guarded by a lock because tests read them from another thread than the server's.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.home = f"/public/home/{config.user}"
        self.fs = PathMapper(config.root, self.home)
        self.request_counts: Counter[str] = Counter()
        self.received_remove_paths: list[str] = []
        self.deleted_paths: list[str] = []
        self.tasks: dict[str, FileOperTask] = {}
        self.fault: Fault | None = None
        #: Declarative faults (see faults.py): applied around the handler of every authenticated call.
        self.faults: FaultPlan | None = None
        #: Per-path task failures: a task for this virtual path fails with (code, msg) instead of deleting,
        #: inline or later in the background worker (a task that fails after being queued).
        self.path_faults: dict[str, tuple[str, str]] = {}
        #: Paths of async-remove calls that the server accepted (tasks were created for them).
        self.accepted_remove_paths: list[str] = []
        #: Paths a `vanish` fault deleted behind the client's back.
        self.vanished_paths: list[str] = []
        self.lock = threading.Lock()
        self._queue: asyncio.Queue[str] | None = None
        self.ac = SandboxAc(self)
        self.app = self._build_app()

    def reset_records(self) -> None:
        with self.lock:
            self.request_counts.clear()
            self.received_remove_paths.clear()
            self.accepted_remove_paths.clear()
            self.vanished_paths.clear()
            self.deleted_paths.clear()

    def task_snapshot(self) -> dict[str, FileOperTask]:
        """Copies of the current tasks, safe to read while the worker runs."""
        with self.lock:
            return {task_id: task.model_copy() for task_id, task in self.tasks.items()}

    # -- plumbing ---------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            self._queue = asyncio.Queue()
            worker = asyncio.create_task(self._worker(), name="efile-sandbox-worker")
            try:
                yield
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

        routes = [
            Route(ASYNC_REMOVE, self._endpoint("async-remove", self._remove), methods=["POST"]),
            Route(TASK_LIST, self._endpoint("task/list", self._task_list), methods=["POST"]),
            Route(TASK_CANCEL, self._endpoint("task/cancel", self._task_cancel), methods=["POST"]),
            Route(FILE_LIST, self._endpoint("file/list", self._file_list), methods=["GET"]),
            *self.ac.routes(),
        ]
        return Starlette(routes=routes, lifespan=lifespan)

    def _endpoint(
        self, name: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            with self.lock:
                self.request_counts[name] += 1
            if self.config.delay:
                await anyio.sleep(self.config.delay)
            if name == "async-remove":
                # Recorded before auth, faults and validation: invariants are about what a client
                # sent, whether or not the server went on to accept it.
                await self._record_remove_paths(request)
            if self.fault is not None:
                injected = await self.fault(name, request)
                if injected is not None:
                    return injected
            given = request.headers.get("token", "")
            if not secrets.compare_digest(given.encode(), self.config.token.encode()):
                refused = self.ac.refuse_efile_token(given)  # a token from sign-in is good too
                if refused is not None:
                    return refused
            try:
                if self.faults is not None:
                    self.faults.vanish = self._vanish_one
                    return await self.faults.apply(name, request, handler)
                return await handler(request)
            except ApiError as error:
                return _answer(error.code, error.msg)

        return endpoint

    async def _record_remove_paths(self, request: Request) -> None:
        try:
            body = await request.json()
        except ValueError:
            return
        # A lone object is refused later, but it still names a path the client asked to delete.
        items = body if isinstance(body, list) else [body]
        paths = [item["sourcePath"] for item in items if isinstance(item, dict) and isinstance(item.get("sourcePath"), str)]
        with self.lock:
            self.received_remove_paths.extend(paths)

    @staticmethod
    async def _json(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise ApiError("10004", "request body is not valid JSON") from None

    def _new_task(self, virtual: str, entries: int, size: int, *, synchronous: bool) -> FileOperTask:
        now = format_time()
        user = self.config.user
        return FileOperTask(
            taskId=uuid.uuid4().hex,
            userId=user,
            userName=user,
            clusterUserName=user,
            sourcePath=virtual,
            clusterId=CLUSTER,
            clusterName=CLUSTER,
            operationType="delete",
            synchronousExecution=synchronous,
            status="waiting",
            totalNum=entries,
            totalSize=size,
            processedNum=0,
            processedSize=0,
            progress="0%",
            submitTime=now,
            startTime=now,
            updateTime=now,
        )

    @staticmethod
    def _fail(task: FileOperTask, error: OSError | ApiError) -> None:
        if isinstance(error, ApiError):
            code, msg = error.code, error.msg
        elif isinstance(error, PermissionError):
            code, msg = "911030", f"permission denied: {task.source_path}"
        elif isinstance(error, FileNotFoundError):
            code, msg = "911020", f"file or directory does not exist: {task.source_path}"
        else:
            code, msg = "10001", f"internal error: {error.strerror or error}"
        task.status, task.error_code, task.error_msg = "fail", code, msg
        task.update_time = format_time()

    # -- async-remove -----------------------------------------------------------------------------

    def _prepare_removal(self, paths: list[str]) -> list[tuple[str, Path, int, int]]:
        """Map, check and count every path; any problem fails the whole call and nothing is deleted."""
        mapped = []
        for virtual in paths:
            real = self.fs.to_real(virtual)
            if real == self.fs.root:
                raise ApiError("911030", f"permission denied: cannot delete the home directory {virtual}")
            mapped.append((self.fs.normalise(virtual), real))
        prepared = []
        for virtual, real in mapped:
            try:
                entries, size = count_tree(real)
            except (FileNotFoundError, NotADirectoryError):
                raise ApiError("911020", f"file or directory does not exist: {virtual}") from None
            prepared.append((virtual, real, entries, size))
        return prepared

    async def _remove(self, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, list):
            raise ApiError("10004", "body must be a JSON array of {\"sourcePath\": ...} objects")
        if not body:
            raise ApiError("10003", "no sourcePath given")
        if len(body) > REMOVE_BATCH_MAX:
            raise ApiError("10004", f"at most {REMOVE_BATCH_MAX} paths per request, got {len(body)}")
        paths = []
        for item in body:
            if not isinstance(item, dict) or "sourcePath" not in item:
                raise ApiError("10003", "every object needs a sourcePath")
            try:
                paths.append(SourcePath.model_validate(item).source_path)
            except ValidationError:
                raise ApiError("10004", "sourcePath must be a string") from None

        prepared = await anyio.to_thread.run_sync(self._prepare_removal, paths)
        inline = sum(entries for _, _, entries, _ in prepared) <= self.config.inline_max_entries
        tasks = [self._new_task(virtual, entries, size, synchronous=inline) for virtual, _, entries, size in prepared]
        with self.lock:
            self.accepted_remove_paths.extend(virtual for virtual, _, _, _ in prepared)

        if not inline:
            assert self._queue is not None
            with self.lock:
                self.tasks.update((task.task_id, task) for task in tasks)
            for task in tasks:
                self._queue.put_nowait(task.task_id)
            result = RemoveResult(fileOperTasks=tasks, execResult="asyncSubmitSuccess")
            return _ok(result.model_dump(by_alias=True))

        for task, (_, real, _, _) in zip(tasks, prepared, strict=True):
            task.status = "processing"
            if task.source_path in self.path_faults:
                self._fail(task, ApiError(*self.path_faults[task.source_path]))
                continue
            try:
                await anyio.to_thread.run_sync(delete_now, real)
            except OSError as error:
                self._fail(task, error)
                continue
            task.status = "complete"
            task.processed_num, task.processed_size = task.total_num, task.total_size
            task.progress = "100%"
            task.update_time = format_time()
            with self.lock:
                self.deleted_paths.append(task.source_path or "")
        # Registered only once finished: an inline task is never seen waiting, so it cannot be cancelled.
        with self.lock:
            self.tasks.update((task.task_id, task) for task in tasks)
        all_ok = all(task.status == "complete" for task in tasks)
        result = RemoveResult(fileOperTasks=tasks, execResult="syncExecSuccess" if all_ok else "syncExecHasError")
        return _ok(result.model_dump(by_alias=True))

    async def _vanish_one(self, paths: list[str]) -> None:
        """For the `vanish` fault: someone else deletes one of the request's paths just before it lands."""
        for virtual in paths:
            try:
                real = self.fs.to_real(virtual)
            except ApiError:
                continue
            if real != self.fs.root and os.path.lexists(real):
                await anyio.to_thread.run_sync(delete_now, real)
                with self.lock:
                    self.vanished_paths.append(virtual)
                return

    # -- background worker ------------------------------------------------------------------------

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            task_id = await self._queue.get()
            task = self.tasks.get(task_id)
            if task is not None and task.status == "waiting":
                await self._run(task)

    async def _run(self, task: FileOperTask) -> None:
        if task.source_path in self.path_faults:
            task.status = "processing"
            task.start_time = task.update_time = format_time()
            self._fail(task, ApiError(*self.path_faults[task.source_path]))
            return
        try:
            # Mapped again: the tree may have changed (or gained symlinks) since submission.
            real = self.fs.to_real(task.source_path or "")
            await anyio.to_thread.run_sync(os.lstat, real)
        except (ApiError, OSError) as error:
            if task.status == "waiting":
                self._fail(task, error)
            return
        if task.status != "waiting":
            return
        task.status = "processing"
        task.start_time = task.update_time = format_time()
        step = 1 if self.config.task_step_delay else _WORKER_CHUNK
        entries = iter_delete(real)
        try:
            while True:
                sizes, finished = await anyio.to_thread.run_sync(pull, entries, step)
                task.processed_num = (task.processed_num or 0) + len(sizes)
                task.processed_size = (task.processed_size or 0) + sum(sizes)
                task.progress = _progress(task)
                task.update_time = format_time()
                if finished:
                    break
                if self.config.task_step_delay:
                    await anyio.sleep(self.config.task_step_delay * len(sizes))
                # Cancel arrives through task/cancel on this same loop; honour it at the next entry.
                if task.status == "cancel":
                    return
        except OSError as error:
            if task.status == "processing":
                self._fail(task, error)
            return
        finally:
            entries.close()
        with self.lock:
            self.deleted_paths.append(task.source_path or "")
        # A cancel that raced the last entry stays "cancel" (the client was told so), though the
        # record above keeps the truth that the path is gone.
        if task.status == "processing":
            task.status = "complete"
            task.update_time = format_time()

    # -- task/list and task/cancel ----------------------------------------------------------------

    async def _task_ids(self, request: Request) -> list[str]:
        body = await self._json(request)
        if not isinstance(body, dict) or "taskIds" not in body:
            raise ApiError("10003", "taskIds is required")
        try:
            ids = TaskIds.model_validate(body).task_ids
        except ValidationError:
            raise ApiError("10004", "taskIds must be a list of strings") from None
        if len(ids) > TASK_IDS_HARD_MAX:
            raise ApiError("10004", f"at most {TASK_IDS_HARD_MAX} taskIds per request, got {len(ids)}")
        return ids

    async def _task_list(self, request: Request) -> Response:
        ids = await self._task_ids(request)
        found = [self.tasks[task_id] for task_id in dict.fromkeys(ids) if task_id in self.tasks]
        data = TaskListResult(fileOperTasks=found).model_dump(by_alias=True)
        return _ok(data["fileOperTasks"] if self.config.task_list_as_bare_list else data)

    async def _task_cancel(self, request: Request) -> Response:
        for task_id in await self._task_ids(request):
            task = self.tasks.get(task_id)
            if task is not None and task.status in ("waiting", "processing"):
                task.status = "cancel"
                task.update_time = format_time()
        return _ok(None)

    # -- file/list --------------------------------------------------------------------------------

    async def _file_list(self, request: Request) -> Response:
        query = request.query_params
        if "start" not in query or "limit" not in query:
            raise ApiError("10003", "start and limit are required")
        try:
            start, limit = int(query["start"]), int(query["limit"])
        except ValueError:
            raise ApiError("10004", "start and limit must be integers") from None
        if start < 0 or limit < 1 or limit > self.config.list_max_limit:
            raise ApiError("10004", f"need start >= 0 and 1 <= limit <= {self.config.list_max_limit}")
        order = query.get("order") or "asc"
        order_by = query.get("orderBy") or "name"
        if order not in ("asc", "desc") or order_by not in ("name", "size", "lastModifiedTime"):
            raise ApiError("10004", "order must be asc|desc and orderBy name|size|lastModifiedTime")
        virtual = query.get("path") or self.home
        real = self.fs.to_real(virtual)
        virtual = self.fs.normalise(virtual)

        entries = await anyio.to_thread.run_sync(list_directory, real, virtual)
        keyword = (query.get("keyWord") or "").casefold()
        if keyword:
            entries = [(entry, info) for entry, info in entries if keyword in entry.name.casefold()]
        # Name breaks ties so paging is stable across calls.
        entries.sort(key=lambda pair: pair[0].name)
        if order_by == "size":
            entries.sort(key=lambda pair: pair[1].st_size)
        elif order_by == "lastModifiedTime":
            entries.sort(key=lambda pair: pair[1].st_mtime)
        if order == "desc":
            entries.reverse()
        if self.config.list_page_cap is not None:
            limit = min(limit, self.config.list_page_cap)
        page = [entry.model_dump(by_alias=True) for entry, _ in entries[start : start + limit]]
        return _ok({"total": len(entries), "path": virtual, "fileList": page, "children": []})
