"""The sandbox efile API: the Starlette assembly over a local directory, plus the state tests inspect.

The work is done elsewhere, one job per module: path resolution and file-system work (fs.py),
file/list (listing.py), deletion tasks and the background worker (tasks.py), quota (quota.py),
the AC service (ac.py) and injected faults (faults.py). Here: the records, the request wrapper
every call goes through (counting, delay, faults, token check) and the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from efile_mcp.models.wire import (
    ASYNC_REMOVE,
    FILE_LIST,
    FILE_MKDIR,
    FILE_MOVE,
    FILE_RENAME,
    FILE_UPLOAD,
    QUOTA,
    TASK_CANCEL,
    TASK_LIST,
    FileOperTask,
)
from efile_mcp.sandbox.ac import SandboxAc
from efile_mcp.sandbox.config import SandboxConfig
from efile_mcp.sandbox.envelope import ApiError, answer, ok
from efile_mcp.sandbox.faults import FaultPlan
from efile_mcp.sandbox.file_list import ListingRules, list_folder, parse_query
from efile_mcp.sandbox.fs import PathMapper
from efile_mcp.sandbox.moves import (
    MoveRecord,
    make_folder,
    move_paths,
    rename_path,
    split_sources,
    truthy,
    write_upload,
)
from efile_mcp.sandbox.quota import QuotaService
from efile_mcp.sandbox.task_runner import CLUSTER, StepHook, TaskRunner, remove_paths, task_ids

__all__ = ["CLUSTER", "Sandbox", "SandboxConfig"]

Fault = Callable[[str, Request], Awaitable[Response | None]]


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
        #: Called in a worker thread before each step of a queued deletion (see tasks.StepHook).
        self.worker_step_hook: StepHook | None = None
        #: Every move and rename the server carried out (file/move, file/rename), in order.
        self.moves: list[MoveRecord] = []
        self.lock = threading.Lock()
        self.runner = TaskRunner(self)
        self.quota = QuotaService(self)
        self.ac = SandboxAc(self)
        self.app = self._build_app()

    def reset_records(self) -> None:
        with self.lock:
            self.request_counts.clear()
            self.received_remove_paths.clear()
            self.accepted_remove_paths.clear()
            self.vanished_paths.clear()
            self.deleted_paths.clear()
            self.moves.clear()

    def task_snapshot(self) -> dict[str, FileOperTask]:
        """Copies of the current tasks, safe to read while the worker runs."""
        with self.lock:
            return {task_id: task.model_copy() for task_id, task in self.tasks.items()}

    # -- plumbing ---------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            self.runner.start()
            worker = asyncio.create_task(self.runner.run_worker(), name="efile-sandbox-worker")
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
            Route(QUOTA, self._endpoint("quota", self._quota), methods=["GET"]),
            Route(FILE_MKDIR, self._endpoint("mkdir", self._mkdir), methods=["POST"]),
            Route(FILE_MOVE, self._endpoint("move", self._move), methods=["POST"]),
            Route(FILE_RENAME, self._endpoint("rename", self._rename), methods=["POST"]),
            Route(FILE_UPLOAD, self._endpoint("upload", self._upload), methods=["POST"]),
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
                return answer(error.code, error.msg)

        return endpoint

    async def _record_remove_paths(self, request: Request) -> None:
        try:
            body = await request.json()
        except ValueError:
            return
        # A lone object is refused later, but it still names a path the client asked to delete.
        items = body if isinstance(body, list) else [body]
        paths = [
            item["sourcePath"] for item in items if isinstance(item, dict) and isinstance(item.get("sourcePath"), str)
        ]
        with self.lock:
            self.received_remove_paths.extend(paths)

    @staticmethod
    async def _json(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise ApiError("10004", "request body is not valid JSON") from None

    async def _vanish_one(self, paths: list[str]) -> None:
        """For the `vanish` fault: someone else deletes one of the request's paths just before it lands."""
        for virtual in paths:
            if await anyio.to_thread.run_sync(self.runner.delete_behind_the_clients_back, virtual):
                with self.lock:
                    self.vanished_paths.append(virtual)
                return

    # -- handlers ---------------------------------------------------------------------------------

    async def _remove(self, request: Request) -> Response:
        paths = remove_paths(await self._json(request))
        return ok(await self.runner.remove(paths))

    async def _task_list(self, request: Request) -> Response:
        return ok(self.runner.lookup(task_ids(await self._json(request))))

    async def _task_cancel(self, request: Request) -> Response:
        self.runner.cancel(task_ids(await self._json(request)))
        return ok(None)

    async def _file_list(self, request: Request) -> Response:
        config = self.config
        rules = ListingRules(
            max_limit=config.list_max_limit,
            page_cap=config.list_page_cap,
            ignores_start=config.list_ignores_start,
            children=config.list_children,
        )
        query = parse_query(request.query_params, self.home, rules)
        return ok(await anyio.to_thread.run_sync(list_folder, self.fs, query, rules))

    async def _quota(self, request: Request) -> Response:
        return ok(await self.quota.answer(request.path_params["username"]))

    # -- moving, renaming, making folders, uploading (moves.py) ----------------------------------

    @staticmethod
    async def _fields(request: Request) -> dict[str, str]:
        """Form fields (the documented body), with the query string as a fallback (mkdir's example uses it)."""
        fields = {key: value for key, value in request.query_params.items()}
        if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/")):
            form = await request.form()
            fields.update({key: value for key, value in form.items() if isinstance(value, str)})
        return fields

    async def _mkdir(self, request: Request) -> Response:
        fields = await self._fields(request)
        if not fields.get("path"):
            raise ApiError("10003", "path is required")
        create_parents = truthy(fields.get("createParents"))
        await anyio.to_thread.run_sync(lambda: make_folder(self.fs, fields["path"], create_parents=create_parents))
        return ok(None)

    async def _move(self, request: Request) -> Response:
        fields = await self._fields(request)
        sources = split_sources(fields.get("sourcePaths"))
        target = fields.get("targetPath")
        if not target:
            raise ApiError("10003", "targetPath is required")
        cover = (fields.get("cover") or "uncover").strip().lower()
        if cover not in ("cover", "uncover"):
            raise ApiError("10004", "cover must be cover or uncover")
        moved = await anyio.to_thread.run_sync(lambda: move_paths(self.fs, sources, target, cover=cover == "cover"))
        with self.lock:
            self.moves.extend(moved)
        return ok(None)

    async def _rename(self, request: Request) -> Response:
        fields = await self._fields(request)
        path, new_name = fields.get("fileAbsolutePath"), fields.get("newName")
        if not path or new_name is None:
            raise ApiError("10003", "fileAbsolutePath and newName are required")
        renamed = await anyio.to_thread.run_sync(lambda: rename_path(self.fs, path, new_name))
        with self.lock:
            self.moves.append(renamed)
        return ok(None)

    async def _upload(self, request: Request) -> Response:
        form = await request.form()
        folder, upload = form.get("path"), form.get("file")
        if not isinstance(folder, str) or not folder or upload is None or isinstance(upload, str):
            raise ApiError("10003", "path and file are required")
        content = await upload.read()
        name = upload.filename or ""
        cover = str(form.get("cover") or "").strip().lower() in ("cover", "true", "1")
        await anyio.to_thread.run_sync(lambda: write_upload(self.fs, folder, name, content, cover=cover))
        return ok(None)
