"""The sandbox efile API, over real HTTP on 127.0.0.1.

These tests pin down the sandbox's behaviour (the API as documented in shared/efile-api.md, plus
the documented assumptions) and, above all, that it never deletes anything outside its root.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from efile_mcp.models.wire import (
    ASYNC_REMOVE,
    FILE_LIST,
    TASK_CANCEL,
    TASK_LIST,
    Envelope,
    FileListResult,
    FileOperTask,
    RemoveResult,
    TaskListResult,
)
from efile_mcp.sandbox import RunningSandbox, SandboxConfig, run_sandbox_in_thread, seed_sample_tree
from efile_mcp.sandbox.fs import ApiError, PathMapper

from .conftest import wait_for_event

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
SLOW = {"task_step_delay": 0.01}  # big-run (304 entries) then takes about 3 s in the worker
STEPWISE = {"task_step_delay": 0.0001}  # the worker deletes one entry per step, with no noticeable pause


class PausedWorker:
    """The sandbox worker's step hook: pauses the first queued task before its step `pause_at` until resumed.

    The worker runs one task after another, so the first step of the task queued next (`reached(task_id)`)
    tells that the worker is done with every task before it: a test counts then, instead of waiting to see
    that nothing more happens.
    """

    def __init__(self, pause_at: int) -> None:
        self.pause_at = pause_at
        self.paused, self.resume = threading.Event(), threading.Event()
        self._steps: Counter[str] = Counter()
        self._reached: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def reached(self, task_id: str) -> threading.Event:
        with self._lock:
            return self._reached.setdefault(task_id, threading.Event())

    def __call__(self, task: FileOperTask) -> None:  # in a worker thread: blocking it pauses the worker only
        self._steps[task.task_id] += 1
        self.reached(task.task_id).set()
        if not self.paused.is_set() and self._steps[task.task_id] == self.pause_at:
            self.paused.set()
            self.resume.wait(10)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api(sandbox: RunningSandbox) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=sandbox.base_url, headers={"token": sandbox.token}, timeout=10) as client:
        yield client


def vpath(sandbox: RunningSandbox, relative: str) -> str:
    return f"{sandbox.home}/{relative}"


async def remove(api: httpx2.AsyncClient, *paths: str) -> dict[str, Any]:
    response = await api.post(ASYNC_REMOVE, json=[{"sourcePath": path} for path in paths])
    assert response.status_code == 200
    return response.json()


async def list_dir(api: httpx2.AsyncClient, path: str | None = None, **params: Any) -> dict[str, Any]:
    query = {"start": 0, "limit": 100, **params}
    if path is not None:
        query["path"] = path
    response = await api.get(FILE_LIST, params=query)
    assert response.status_code == 200
    return response.json()


async def tasks(api: httpx2.AsyncClient, *task_ids: str) -> dict[str, dict[str, Any]]:
    body = (await api.post(TASK_LIST, json={"taskIds": list(task_ids)})).json()
    assert body["code"] == "0"
    return {task["taskId"]: task for task in body["data"]["fileOperTasks"]}


async def wait_for(api: httpx2.AsyncClient, task_id: str, statuses: set[str], timeout: float = 10) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            task = (await tasks(api, task_id))[task_id]
            if task["status"] in statuses:
                return task
            await anyio.sleep(0.01)


def names(body: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in body["data"]["fileList"]]


def make_tree(directory: Path, files: int) -> None:
    directory.mkdir(parents=True)
    for i in range(files):
        (directory / f"f{i:04d}").write_text("x" * 10)


# -- envelope and auth ----------------------------------------------------------------------------


async def test_envelope_shape_and_string_codes(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    ok = await list_dir(api)
    assert set(ok) == {"code", "msg", "data"}
    assert ok["code"] == "0" and isinstance(ok["code"], str) and ok["msg"] == "success"
    listing = FileListResult.model_validate(Envelope.model_validate(ok).data)
    assert listing.path == sandbox.home
    assert [child.label for child in listing.children or []] == [".ssh", "projects", "scratch", "数据"]

    error = await list_dir(api, vpath(sandbox, "no-such-dir"))
    assert set(error) == {"code", "msg", "data"}
    assert error["code"] == "911020" and isinstance(error["code"], str)
    assert error["data"] is None and "no-such-dir" in error["msg"]


ENDPOINT_CALLS = [
    ("POST", ASYNC_REMOVE, [{"sourcePath": "/public/home/demo/notes.txt"}]),
    ("POST", TASK_LIST, {"taskIds": []}),
    ("POST", TASK_CANCEL, {"taskIds": []}),
    ("GET", FILE_LIST, None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINT_CALLS)
@pytest.mark.parametrize("headers", [{}, {"token": "wrong"}], ids=["missing", "wrong"])
async def test_token_required(
    sandbox: RunningSandbox, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    async with httpx2.AsyncClient(base_url=sandbox.base_url, headers=headers) as client:
        params = {"start": 0, "limit": 10} if method == "GET" else None
        response = await client.request(method, path, json=body, params=params)
    assert response.status_code == 200
    assert response.json() == {"code": "911406", "msg": "token could not be mapped to a user", "data": None}
    assert sandbox.token not in response.text
    assert (sandbox.root / "notes.txt").exists()
    assert sandbox.sandbox.deleted_paths == []


async def test_unknown_route_is_http_404(api: httpx2.AsyncClient) -> None:
    assert (await api.get("/efile/openapi/v2/file/nope")).status_code == 404
    assert (await api.post("/efile/openapi/v2/file/nope", json={})).status_code == 404


# -- file/list ------------------------------------------------------------------------------------


async def test_list_home_and_paging(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    everything = await list_dir(api)
    assert names(everything) == [".bashrc", ".ssh", "notes.txt", "projects", "scratch", "数据"]
    assert everything["data"]["total"] == 6

    first = await list_dir(api, start=0, limit=4)
    second = await list_dir(api, start=4, limit=4)
    beyond = await list_dir(api, start=10, limit=4)
    assert names(first) + names(second) == names(everything)
    assert [body["data"]["total"] for body in (first, second, beyond)] == [6, 6, 6]
    assert names(beyond) == []
    # The explicit home path and a sloppy spelling of it list the same directory.
    assert names(await list_dir(api, sandbox.home + "//")) == names(everything)


async def test_list_keyword_is_case_insensitive_and_total_counts_matches(
    sandbox: RunningSandbox, api: httpx2.AsyncClient
) -> None:
    body = await list_dir(api, vpath(sandbox, "scratch/run-001"), keyWord="LOG", limit=1)
    assert body["data"]["total"] == 2
    assert len(body["data"]["fileList"]) == 1
    all_logs = await list_dir(api, vpath(sandbox, "scratch/run-001"), keyWord="LOG")
    assert names(all_logs) == ["stderr.log", "stdout.log"]


async def test_list_ordering(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    folder = sandbox.root / "ordered"
    folder.mkdir()
    for name, size, mtime in [("b", 30, 1_700_000_300), ("a", 20, 1_700_000_100), ("c", 10, 1_700_000_200)]:
        (folder / name).write_bytes(b"x" * size)
        os.utime(folder / name, (mtime, mtime))
    path = vpath(sandbox, "ordered")
    assert names(await list_dir(api, path)) == ["a", "b", "c"]
    assert names(await list_dir(api, path, order="desc")) == ["c", "b", "a"]
    assert names(await list_dir(api, path, orderBy="size")) == ["c", "a", "b"]
    assert names(await list_dir(api, path, orderBy="size", order="desc")) == ["b", "a", "c"]
    assert names(await list_dir(api, path, orderBy="lastModifiedTime")) == ["a", "c", "b"]
    assert names(await list_dir(api, path, orderBy="lastModifiedTime", order="desc", limit=1)) == ["b"]


async def test_list_entry_fields(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    os.chmod(sandbox.root / "notes.txt", 0o640)
    os.symlink("notes.txt", sandbox.root / "notes-link")
    entries = {entry["name"]: entry for entry in (await list_dir(api))["data"]["fileList"]}

    notes = entries["notes.txt"]
    assert notes["path"] == vpath(sandbox, "notes.txt")
    assert notes["type"] == "file" and notes["isRegularFile"] and not notes["isDirectory"]
    assert notes["size"] == (sandbox.root / "notes.txt").stat().st_size
    assert notes["permission"] == "rw-r-----"
    assert notes["owner"] and notes["group"]
    for key in ("lastModifiedTime", "creationTime", "lastAccessTime"):
        assert TIME_RE.match(notes[key])

    assert entries["scratch"]["type"] == "directory" and entries["scratch"]["isDirectory"]
    link = entries["notes-link"]
    assert link["type"] == "symlink" and link["isSymbolicLink"] and not link["isRegularFile"]
    assert link["size"] == len("notes.txt")  # lstat: the link, not its target


async def test_list_errors(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    async def code(**params: Any) -> str:
        return (await api.get(FILE_LIST, params=params)).json()["code"]

    assert await code(limit=10) == "10003"
    assert await code(start=0) == "10003"
    assert await code(start=0, limit=100_001) == "10004"
    assert await code(start=0, limit="ten") == "10004"
    assert await code(start=-1, limit=10) == "10004"
    assert await code(start=0, limit=10, order="up") == "10004"
    assert await code(start=0, limit=10, orderBy="owner") == "10004"
    assert await code(start=0, limit=10, path=vpath(sandbox, "missing")) == "911020"
    assert await code(start=0, limit=10, path=vpath(sandbox, "notes.txt")) == "911022"
    assert await code(start=0, limit=10, path="/public/home/other") == "911030"
    assert await code(start=0, limit=10, path="/etc") == "911030"


@pytest.mark.parametrize("sandbox", [{"list_max_limit": 5}], indirect=True)
async def test_list_max_limit_is_configurable(api: httpx2.AsyncClient) -> None:
    assert (await list_dir(api, limit=5))["code"] == "0"
    assert (await list_dir(api, limit=6))["code"] == "10004"


# -- async-remove ---------------------------------------------------------------------------------


async def test_inline_removal_deletes_real_files(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    run1, tmp_log = vpath(sandbox, "scratch/run-001"), vpath(sandbox, "scratch/tmp.log")
    body = await remove(api, run1, tmp_log)
    assert body["code"] == "0"
    result = RemoveResult.model_validate(body["data"])
    assert result.exec_result == "syncExecSuccess"
    assert result.file_oper_duplicate_file_vos is None
    first, second = result.file_oper_tasks
    assert (first.source_path, second.source_path) == (run1, tmp_log)
    for task in result.file_oper_tasks:
        assert re.fullmatch(r"[0-9a-f]{32}", task.task_id)
        assert task.status == "complete" and task.synchronous_execution is True
        assert task.operation_type == "delete"
        assert task.user_name == task.cluster_user_name == "demo"
        assert task.cluster_id == task.cluster_name == "sandbox"
        assert task.processed_num == task.total_num and task.processed_size == task.total_size
        assert all(TIME_RE.match(t or "") for t in (task.submit_time, task.start_time, task.update_time))
    assert first.total_num == 7  # run-001, 3 files, checkpoints/ and its 2 files
    assert second.total_num == 1 and second.total_size == (len("temporary output\n") * 8)
    assert not (sandbox.root / "scratch" / "run-001").exists()
    assert not (sandbox.root / "scratch" / "tmp.log").exists()
    assert (sandbox.root / "scratch" / "run-002").exists()
    assert sandbox.sandbox.deleted_paths == [run1, tmp_log]
    # Inline tasks can still be looked up afterwards.
    assert (await tasks(api, first.task_id))[first.task_id]["status"] == "complete"


async def test_vanished_path_fails_the_whole_call_and_deletes_nothing(
    sandbox: RunningSandbox, api: httpx2.AsyncClient
) -> None:
    paths = [vpath(sandbox, "notes.txt"), vpath(sandbox, "scratch/gone.txt"), vpath(sandbox, ".bashrc")]
    body = await remove(api, *paths)
    assert body["code"] == "911020"
    assert "scratch/gone.txt" in body["msg"]
    assert (sandbox.root / "notes.txt").exists() and (sandbox.root / ".bashrc").exists()
    assert sandbox.sandbox.deleted_paths == []
    assert sandbox.sandbox.received_remove_paths == paths
    assert sandbox.sandbox.tasks == {}


@pytest.mark.parametrize(
    "path",
    ["/public/home/other/notes.txt", "/etc/passwd", "/public/home/demo", "/public/home/demo/", "/public/home"],
)
async def test_outside_home_or_home_itself_is_permission_denied(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, path: str
) -> None:
    body = await remove(api, vpath(sandbox, "notes.txt"), path)
    assert body["code"] == "911030"
    assert (sandbox.root / "notes.txt").exists()
    assert sandbox.sandbox.deleted_paths == []


async def test_remove_body_validation(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    notes = vpath(sandbox, "notes.txt")

    async def code(**kwargs: Any) -> str:
        return (await api.post(ASYNC_REMOVE, **kwargs)).json()["code"]

    assert await code(json=[{"sourcePath": notes}] * 101) == "10004"
    assert await code(json={"sourcePath": notes}) == "10004"
    assert await code(json=[]) == "10003"
    assert await code(json=[{"path": notes}]) == "10003"
    assert await code(json=[notes]) == "10003"
    assert await code(json=[{"sourcePath": 42}]) == "10004"
    assert await code(json=[{"sourcePath": "relative/notes.txt"}]) == "10004"
    assert await code(content=b"[{not json", headers={"content-type": "application/json"}) == "10004"
    assert (sandbox.root / "notes.txt").exists()
    assert sandbox.sandbox.deleted_paths == []
    # Rejected calls are still on the record of what was received.
    assert sandbox.sandbox.received_remove_paths.count(notes) == 102


async def test_inline_permission_error_fails_that_task(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.root / "locked.txt").write_text("x")
    real_unlink = os.unlink

    # The tests run as root, where chmod cannot provoke EACCES; fake it for one name.
    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if str(path).endswith("locked.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    body = await remove(api, vpath(sandbox, "locked.txt"), vpath(sandbox, "notes.txt"))
    assert body["code"] == "0"
    assert body["data"]["execResult"] == "syncExecHasError"
    locked, notes = body["data"]["fileOperTasks"]
    assert (locked["status"], locked["errorCode"]) == ("fail", "911030")
    assert notes["status"] == "complete"
    assert (sandbox.root / "locked.txt").exists() and not (sandbox.root / "notes.txt").exists()
    assert sandbox.sandbox.deleted_paths == [vpath(sandbox, "notes.txt")]


# -- queued tasks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sandbox", [{"task_step_delay": 0.003}], indirect=True)
async def test_big_removal_is_queued_and_progresses(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    big = vpath(sandbox, "scratch/big-run")
    body = await remove(api, big)
    assert body["code"] == "0" and body["data"]["execResult"] == "asyncSubmitSuccess"
    (submitted,) = body["data"]["fileOperTasks"]
    assert submitted["status"] == "waiting" and submitted["synchronousExecution"] is False
    assert submitted["totalNum"] == 304  # big-run, 3 shards, 300 files
    task_id = submitted["taskId"]

    seen, processed = ["waiting"], []
    with anyio.fail_after(15):
        while seen[-1] != "complete":
            task = (await tasks(api, task_id))[task_id]
            if task["status"] != seen[-1]:
                seen.append(task["status"])
            processed.append(task["processedNum"])
            # Other requests are served while the worker deletes.
            assert (await list_dir(api, vpath(sandbox, "scratch")))["code"] == "0"
            await anyio.sleep(0.02)
    assert seen == ["waiting", "processing", "complete"]
    assert processed == sorted(processed) and any(0 < n < 304 for n in processed)
    assert task["processedNum"] == task["totalNum"] == 304
    assert task["processedSize"] == task["totalSize"] and task["progress"] == "100%"
    assert not (sandbox.root / "scratch" / "big-run").exists()
    assert sandbox.sandbox.deleted_paths == [big]


@pytest.mark.parametrize("sandbox", [STEPWISE], indirect=True)
async def test_cancel_stops_a_processing_task(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    worker = PausedWorker(pause_at=5)
    sandbox.sandbox.worker_step_hook = worker
    make_tree(sandbox.root / "next", 250)
    body = await remove(api, vpath(sandbox, "scratch/big-run"))
    task_id = body["data"]["fileOperTasks"][0]["taskId"]
    queued_next = (await remove(api, vpath(sandbox, "next")))["data"]["fileOperTasks"][0]["taskId"]
    await wait_for_event(worker.paused, "the worker never reached the fifth entry")
    assert (await tasks(api, task_id))[task_id]["status"] == "processing"

    cancel = (await api.post(TASK_CANCEL, json={"taskIds": [task_id, "0" * 32]})).json()
    assert cancel == {"code": "0", "msg": "success", "data": None}
    worker.resume.set()
    await wait_for_event(worker.reached(queued_next), "the worker never moved on to the next task")
    stopped = (await tasks(api, task_id))[task_id]
    assert stopped["status"] == "cancel"
    assert stopped["processedNum"] == 5  # the entry it was on when the cancel came, and no other
    remaining = sum(1 for _ in (sandbox.root / "scratch" / "big-run").rglob("*"))
    assert remaining + 1 + stopped["processedNum"] == 304
    assert sandbox.sandbox.deleted_paths == []


@pytest.mark.parametrize("sandbox", [STEPWISE], indirect=True)
async def test_cancel_a_waiting_task_and_terminal_tasks_stay(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    worker = PausedWorker(pause_at=1)
    sandbox.sandbox.worker_step_hook = worker
    make_tree(sandbox.root / "big-2", 250)
    make_tree(sandbox.root / "next", 250)
    inline = (await remove(api, vpath(sandbox, "notes.txt")))["data"]["fileOperTasks"][0]["taskId"]
    first = (await remove(api, vpath(sandbox, "scratch/big-run")))["data"]["fileOperTasks"][0]["taskId"]
    second = (await remove(api, vpath(sandbox, "big-2")))["data"]["fileOperTasks"][0]["taskId"]
    queued_next = (await remove(api, vpath(sandbox, "next")))["data"]["fileOperTasks"][0]["taskId"]
    await wait_for_event(worker.paused, "the worker never started the first queued task")
    assert (await tasks(api, first))[first]["status"] == "processing"
    assert (await tasks(api, second))[second]["status"] == "waiting"

    await api.post(TASK_CANCEL, json={"taskIds": [second, inline]})
    await api.post(TASK_CANCEL, json={"taskIds": [first]})
    worker.resume.set()
    await wait_for_event(worker.reached(queued_next), "the worker never moved past the cancelled tasks")
    after = await tasks(api, inline, first, second)
    assert after[inline]["status"] == "complete"
    assert after[first]["status"] == after[second]["status"] == "cancel"
    assert after[first]["processedNum"] == 1 and after[second]["processedNum"] == 0
    assert len(list((sandbox.root / "big-2").iterdir())) == 250


@pytest.mark.parametrize("sandbox", [SLOW], indirect=True)
async def test_queued_task_whose_path_vanished_fails_911020(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    make_tree(sandbox.root / "big-2", 250)
    first = (await remove(api, vpath(sandbox, "scratch/big-run")))["data"]["fileOperTasks"][0]["taskId"]
    second = (await remove(api, vpath(sandbox, "big-2")))["data"]["fileOperTasks"][0]["taskId"]
    await wait_for(api, first, {"processing"})
    shutil.rmtree(sandbox.root / "big-2")
    await api.post(TASK_CANCEL, json={"taskIds": [first]})
    task = await wait_for(api, second, {"fail", "complete", "cancel"})
    assert (task["status"], task["errorCode"]) == ("fail", "911020")
    assert "big-2" in task["errorMsg"]


# -- task/list and task/cancel --------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [TASK_LIST, TASK_CANCEL])
async def test_task_id_validation(api: httpx2.AsyncClient, endpoint: str) -> None:
    async def code(body: Any) -> str:
        return (await api.post(endpoint, json=body)).json()["code"]

    assert await code({"taskIds": ["0" * 32] * 501}) == "10004"
    assert await code({"taskIds": ["0" * 32] * 500}) == "0"
    assert await code({}) == "10003"
    assert await code(["0" * 32]) == "10003"
    assert await code({"taskIds": "abc"}) == "10004"


async def test_unknown_task_ids_are_absent(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    known = (await remove(api, vpath(sandbox, "notes.txt")))["data"]["fileOperTasks"][0]["taskId"]
    body = (await api.post(TASK_LIST, json={"taskIds": ["f" * 32, known]})).json()
    assert body["code"] == "0"
    assert [task["taskId"] for task in body["data"]["fileOperTasks"]] == [known]


@pytest.mark.parametrize("sandbox", [{"task_list_as_bare_list": True}], indirect=True)
async def test_task_list_as_bare_list(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    known = (await remove(api, vpath(sandbox, "notes.txt")))["data"]["fileOperTasks"][0]["taskId"]
    data = (await api.post(TASK_LIST, json={"taskIds": [known]})).json()["data"]
    assert isinstance(data, list) and data[0]["taskId"] == known
    assert TaskListResult.from_data(data).file_oper_tasks[0].status == "complete"


# -- safety of the sandbox itself -----------------------------------------------------------------


async def test_symlink_is_removed_as_a_link_and_its_target_survives(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "keep.txt").write_text("keep")
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside / "secret.txt", sandbox.root / "link-file")
    os.symlink(outside / "dir", sandbox.root / "link-dir")

    # Through a symlinked parent, a path would leave the root: refused for removal and listing.
    assert (await remove(api, vpath(sandbox, "link-dir/keep.txt")))["code"] == "911030"
    assert (await list_dir(api, vpath(sandbox, "link-dir/")))["code"] == "911030"
    assert (await list_dir(api, vpath(sandbox, "link-dir/keep.txt")))["code"] == "911030"

    body = await remove(api, vpath(sandbox, "link-file"), vpath(sandbox, "link-dir"))
    assert body["data"]["execResult"] == "syncExecSuccess"
    assert [task["totalNum"] for task in body["data"]["fileOperTasks"]] == [1, 1]
    assert not os.path.lexists(sandbox.root / "link-file") and not os.path.lexists(sandbox.root / "link-dir")
    assert (outside / "secret.txt").read_text() == "secret"
    assert (outside / "dir" / "keep.txt").read_text() == "keep"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/public/home/demo/../../etc", "911030"),
        ("/public/home/demo/../outside/sentinel.txt", "911030"),
        ("/public/home/demo/scratch/../../outside", "911030"),
        ("/public/home/demo/./notes.txt", "911030"),
        ("/public/home/demo/notes.txt\x00", "911029"),
    ],
)
async def test_traversal_never_touches_anything(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, tmp_path: Path, path: str, code: str
) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "sentinel.txt").write_text("still here")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert (await remove(api, path))["code"] == code
    assert (await list_dir(api, path))["code"] == code
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert sandbox.sandbox.deleted_paths == [] and sandbox.sandbox.received_remove_paths == [path]


def test_path_mapper(tmp_path: Path) -> None:
    mapper = PathMapper(tmp_path, "/public/home/demo")
    root = Path(os.path.realpath(tmp_path))
    assert mapper.to_real("/public/home/demo") == root
    assert mapper.to_real("/public/home/demo//a/b/") == root / "a" / "b"
    assert mapper.normalise("/public/home/demo//a/b/") == "/public/home/demo/a/b"
    assert mapper.to_virtual(root / "a" / "b") == "/public/home/demo/a/b"
    for bad, code in [
        ("/public/home/demox/a", "911030"),
        ("/public/home/demo/a/..", "911030"),
        ("public/home/demo/a", "10004"),
        ("", "10004"),
        ("/public/home/demo/a\x00b", "911029"),
    ]:
        with pytest.raises(ApiError) as caught:
            mapper.to_real(bad)
        assert caught.value.code == code, bad


async def test_names_with_spaces_parentheses_and_cjk(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    data = await list_dir(api, vpath(sandbox, "数据"), keyWord="结果")
    assert data["data"]["path"] == vpath(sandbox, "数据")
    assert [(e["name"], e["path"]) for e in data["data"]["fileList"]] == [("结果.csv", vpath(sandbox, "数据/结果.csv"))]
    assert names(await list_dir(api, vpath(sandbox, "projects/paper (draft)"))) == ["main.tex"]

    body = await remove(api, vpath(sandbox, "projects/paper (draft)"), vpath(sandbox, "数据/结果.csv"))
    assert body["data"]["execResult"] == "syncExecSuccess"
    assert [t["sourcePath"] for t in body["data"]["fileOperTasks"]] == [
        vpath(sandbox, "projects/paper (draft)"),
        vpath(sandbox, "数据/结果.csv"),
    ]
    assert not (sandbox.root / "projects" / "paper (draft)").exists()
    assert not (sandbox.root / "数据" / "结果.csv").exists() and (sandbox.root / "数据").is_dir()


# -- records, hooks, delay, lifecycle -------------------------------------------------------------


async def test_records(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    records = sandbox.sandbox
    notes, missing = vpath(sandbox, "notes.txt"), vpath(sandbox, "missing")
    await list_dir(api)
    await remove(api, missing)
    task_id = (await remove(api, notes))["data"]["fileOperTasks"][0]["taskId"]
    await tasks(api, task_id)
    await api.post(TASK_CANCEL, json={"taskIds": [task_id]})
    async with httpx2.AsyncClient(base_url=sandbox.base_url) as anonymous:
        await anonymous.post(ASYNC_REMOVE, json=[{"sourcePath": vpath(sandbox, ".bashrc")}])

    assert records.request_counts == Counter({"async-remove": 3, "file/list": 1, "task/list": 1, "task/cancel": 1})
    assert records.received_remove_paths == [missing, notes, vpath(sandbox, ".bashrc")]
    assert records.deleted_paths == [notes]
    assert records.tasks[task_id].status == "complete"
    assert records.task_snapshot()[task_id].source_path == notes

    records.reset_records()
    assert (records.request_counts, records.received_remove_paths, records.deleted_paths) == (Counter(), [], [])


async def test_fault_hook(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    seen: list[str] = []

    async def fault(endpoint: str, request: Request) -> Response | None:
        seen.append(endpoint)
        if endpoint == "async-remove":
            return JSONResponse({"code": "911048", "msg": "busy", "data": None})
        return None

    sandbox.sandbox.fault = fault
    assert (await remove(api, vpath(sandbox, "notes.txt")))["code"] == "911048"
    assert (await list_dir(api))["code"] == "0"
    assert seen == ["async-remove", "file/list"]
    assert (sandbox.root / "notes.txt").exists()
    assert sandbox.sandbox.received_remove_paths == [vpath(sandbox, "notes.txt")]
    assert sandbox.sandbox.request_counts["async-remove"] == 1


@pytest.mark.realtime  # the feature is a wall-clock delay; a lower bound, so load cannot fail it
@pytest.mark.parametrize("sandbox", [{"delay": 0.05}], indirect=True)
async def test_delay_is_added_to_every_request(api: httpx2.AsyncClient) -> None:
    await list_dir(api)  # connection set up outside the measurement
    started = time.monotonic()
    await list_dir(api)
    assert time.monotonic() - started >= 0.05


def test_stop_leaves_no_threads_behind(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    config = SandboxConfig(root=seed_sample_tree(tmp_path / "home"), inline_max_entries=2)
    with run_sandbox_in_thread(config) as running:
        assert repr(running).count(running.token) == 0
        with httpx2.Client(base_url=running.base_url, headers={"token": running.token}) as client:
            # Queued work plus a listing, so the server has used worker threads.
            task_id = client.post(ASYNC_REMOVE, json=[{"sourcePath": f"{running.home}/scratch/run-001"}]).json()
            assert task_id["data"]["execResult"] == "asyncSubmitSuccess"
            assert client.get(FILE_LIST, params={"start": 0, "limit": 5}).json()["code"] == "0"
    assert not running.alive
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(running.base_url + FILE_LIST)
