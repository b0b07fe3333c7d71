"""async-remove, task/list and task/cancel of the sandbox: deletion tasks, inline or by the background worker."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import ValidationError

from efile_mcp.models.wire import (
    REMOVE_BATCH_MAX,
    TASK_IDS_HARD_MAX,
    FileOperTask,
    RemoveResult,
    SourcePath,
    TaskIds,
    TaskListResult,
)
from efile_mcp.sandbox.envelope import ApiError
from efile_mcp.sandbox.file_list import format_time
from efile_mcp.sandbox.fs import Located, count_tree, delete_now, iter_delete, pull

if TYPE_CHECKING:
    from efile_mcp.sandbox.service import Sandbox

CLUSTER = "sandbox"
#: Entries the worker deletes per thread hop when no step delay is asked for.
_WORKER_CHUNK = 256

#: Called in a worker thread before each step of a queued deletion (one entry when
#: `task_step_delay` is set), with the task: lets a test change the tree at a known point.
StepHook = Callable[[FileOperTask], None]


def _progress(task: FileOperTask) -> str:
    total = task.total_num or 0
    done = task.processed_num or 0
    return f"{100 if total == 0 else min(100, done * 100 // total)}%"


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


def remove_paths(body: Any) -> list[str]:
    """The paths of an async-remove body, or the error the API answers for a malformed one."""
    if not isinstance(body, list):
        raise ApiError("10004", 'body must be a JSON array of {"sourcePath": ...} objects')
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
    return paths


def task_ids(body: Any) -> list[str]:
    """The ids of a task/list or task/cancel body, or the error the API answers."""
    if not isinstance(body, dict) or "taskIds" not in body:
        raise ApiError("10003", "taskIds is required")
    try:
        ids = TaskIds.model_validate(body).task_ids
    except ValidationError:
        raise ApiError("10004", "taskIds must be a list of strings") from None
    if len(ids) > TASK_IDS_HARD_MAX:
        raise ApiError("10004", f"at most {TASK_IDS_HARD_MAX} taskIds per request, got {len(ids)}")
    return ids


class TaskRunner:
    """Creates deletion tasks, runs small ones inline and queues the rest for one background worker."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._queue: asyncio.Queue[str] | None = None

    def start(self) -> None:
        """Make the queue of the app's event loop; call before `run_worker` and before any request."""
        self._queue = asyncio.Queue()

    async def run_worker(self) -> None:
        """The background worker; runs for the lifetime of the app."""
        assert self._queue is not None, "start() first"
        while True:
            task_id = await self._queue.get()
            task = self._sandbox.tasks.get(task_id)
            if task is not None and task.status == "waiting":
                await self._run(task)

    def _new_task(self, virtual: str, entries: int, size: int, *, synchronous: bool) -> FileOperTask:
        now = format_time()
        user = self._sandbox.config.user
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

    # -- async-remove -----------------------------------------------------------------------------

    def _prepare(self, paths: list[str]) -> list[tuple[str, int, int]]:
        """Resolve, check and count every path; any problem fails the whole call and nothing is deleted."""
        fs = self._sandbox.fs
        for virtual in paths:  # every path is checked for shape and place before any is counted
            if not fs.relative_parts(virtual):
                raise ApiError("911030", f"permission denied: cannot delete the home directory {virtual}")
        prepared = []
        for virtual in paths:
            canonical = fs.normalise(virtual)
            try:
                with fs.locate(virtual) as located:
                    entries, size = count_tree(located)
            except (FileNotFoundError, NotADirectoryError):
                raise ApiError("911020", f"file or directory does not exist: {canonical}") from None
            prepared.append((canonical, entries, size))
        return prepared

    async def remove(self, paths: list[str]) -> dict[str, Any]:
        """`data` of async-remove for these paths."""
        sandbox = self._sandbox
        prepared = await anyio.to_thread.run_sync(self._prepare, paths)
        inline = sum(entries for _, entries, _ in prepared) <= sandbox.config.inline_max_entries
        tasks = [self._new_task(virtual, entries, size, synchronous=inline) for virtual, entries, size in prepared]
        with sandbox.lock:
            sandbox.accepted_remove_paths.extend(virtual for virtual, _, _ in prepared)

        if not inline:
            assert self._queue is not None
            with sandbox.lock:
                sandbox.tasks.update((task.task_id, task) for task in tasks)
            for task in tasks:
                self._queue.put_nowait(task.task_id)
            return RemoveResult(fileOperTasks=tasks, execResult="asyncSubmitSuccess").model_dump(by_alias=True)

        # One thread hop for the call's deletions, not one a path: a hop each, and requests answered in parallel
        # contend for the interpreter lock (measured: twice the CPU for the same 20,000 removals, 8 at a time).
        await anyio.to_thread.run_sync(self._run_inline, tasks)
        # Registered only once finished: an inline task is never seen waiting, so it cannot be cancelled.
        with sandbox.lock:
            sandbox.tasks.update((task.task_id, task) for task in tasks)
        all_ok = all(task.status == "complete" for task in tasks)
        result = RemoveResult(fileOperTasks=tasks, execResult="syncExecSuccess" if all_ok else "syncExecHasError")
        return result.model_dump(by_alias=True)

    def _run_inline(self, tasks: list[FileOperTask]) -> None:
        """The tasks of one call, one after another (blocking: run it in a worker thread)."""
        sandbox = self._sandbox
        for task in tasks:
            task.status = "processing"
            virtual = task.source_path or ""
            if virtual in sandbox.path_faults:
                _fail(task, ApiError(*sandbox.path_faults[virtual]))
                continue
            try:
                # Resolved again: the tree may have changed since it was counted.
                self._delete_now(virtual)
            except (OSError, ApiError) as error:
                _fail(task, error)
                continue
            task.status = "complete"
            task.processed_num, task.processed_size = task.total_num, task.total_size
            task.progress = "100%"
            task.update_time = format_time()
            with sandbox.lock:
                sandbox.deleted_paths.append(virtual)

    def _delete_now(self, virtual: str) -> None:
        with self._sandbox.fs.locate(virtual) as located:
            delete_now(located)

    def delete_behind_the_clients_back(self, virtual: str) -> bool:
        """For the `vanish` fault: delete `virtual` if it exists; True when something was deleted."""
        try:
            with self._sandbox.fs.locate(virtual) as located:
                delete_now(located)
        except (ApiError, FileNotFoundError):
            return False
        return True

    # -- background worker ------------------------------------------------------------------------

    async def _run(self, task: FileOperTask) -> None:
        sandbox = self._sandbox
        virtual = task.source_path or ""
        if virtual in sandbox.path_faults:
            task.status = "processing"
            task.start_time = task.update_time = format_time()
            _fail(task, ApiError(*sandbox.path_faults[virtual]))
            return
        try:
            # Resolved again: the tree may have changed (or gained symlinks) since submission.
            located = await anyio.to_thread.run_sync(self._locate_existing, virtual)
        except (ApiError, OSError) as error:
            if task.status == "waiting":
                _fail(task, error)
            return
        with located:
            await self._delete_queued(task, located)

    def _locate_existing(self, virtual: str) -> Located:
        located = self._sandbox.fs.locate(virtual)
        try:
            os.stat(located.name, dir_fd=located.parent_fd, follow_symlinks=False)  # still there?
        except OSError:
            located.close()
            raise
        return located

    async def _delete_queued(self, task: FileOperTask, located: Located) -> None:
        sandbox = self._sandbox
        if task.status != "waiting":
            return
        task.status = "processing"
        task.start_time = task.update_time = format_time()
        step_delay = sandbox.config.task_step_delay
        step = 1 if step_delay else _WORKER_CHUNK
        entries = iter_delete(located)
        try:
            while True:
                sizes, finished = await anyio.to_thread.run_sync(self._step, task, entries, step)
                task.processed_num = (task.processed_num or 0) + len(sizes)
                task.processed_size = (task.processed_size or 0) + sum(sizes)
                task.progress = _progress(task)
                task.update_time = format_time()
                if finished:
                    break
                if step_delay:
                    await anyio.sleep(step_delay * len(sizes))
                # Cancel arrives through task/cancel on this same loop; honour it at the next entry.
                if task.status == "cancel":
                    return
        except OSError as error:
            if task.status == "processing":
                _fail(task, error)
            return
        finally:
            entries.close()
        with sandbox.lock:
            sandbox.deleted_paths.append(task.source_path or "")
        # A cancel that raced the last entry stays "cancel" (the client was told so), though the
        # record above keeps the truth that the path is gone.
        if task.status == "processing":
            task.status = "complete"
            task.update_time = format_time()

    def _step(self, task: FileOperTask, entries: Iterator[int], step: int) -> tuple[list[int], bool]:
        hook = self._sandbox.worker_step_hook
        if hook is not None:
            hook(task)
        return pull(entries, step)

    # -- task/list and task/cancel ----------------------------------------------------------------

    def lookup(self, ids: list[str]) -> Any:
        tasks = self._sandbox.tasks
        found = [tasks[task_id] for task_id in dict.fromkeys(ids) if task_id in tasks]
        data = TaskListResult(fileOperTasks=found).model_dump(by_alias=True)
        return data["fileOperTasks"] if self._sandbox.config.task_list_as_bare_list else data

    def cancel(self, ids: list[str]) -> None:
        for task_id in ids:
            task = self._sandbox.tasks.get(task_id)
            if task is not None and task.status in ("waiting", "processing"):
                task.status = "cancel"
                task.update_time = format_time()
